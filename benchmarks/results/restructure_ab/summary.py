"""Old (9b4fc23) vs new (restructure) from the interleaved runs: per pass and the median."""
import json, glob, statistics, sys
L = sys.argv[1] if len(sys.argv) > 1 else "/tmp/ab/logs"
def load(kind, side):
    out = {}
    for f in sorted(glob.glob(f"{L}/{kind}_{side}_*.json")):
        out[int(f.rsplit("_", 1)[1].split(".")[0])] = json.load(open(f))
    return out
rows = []
ao, an = load("attr", "old"), load("attr", "new")
for w in range(2):
    for p in sorted(set(ao) & set(an)):
        o, n = ao[p]["results"][w], an[p]["results"][w]
        rows.append((o["workload"], p, o["promptlens_s"], n["promptlens_s"], o["speedup"], n["speedup"], o["vs_floor"], n["vs_floor"]))
fo, fn = load("fix", "old"), load("fix", "new")
for p in sorted(set(fo) & set(fn)):
    o, n = fo[p], fn[p]
    rows.append((f"fix: {o['templates']} templates x {o['cases']} cases", p, o["promptlens_s"], n["promptlens_s"], o["speedup"], n["speedup"], o["promptlens_vs_floor"], n["promptlens_vs_floor"]))
print("| workload | pass | old promptlens s | new promptlens s | new/old time | old speedup vs stock/naive | new speedup | new/old speedup | old x floor | new x floor |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[3]/r[2]:.2f} | {r[4]:.2f}x | {r[5]:.2f}x | {r[5]/r[4]:.2f} | {r[6]:.2f} | {r[7]:.2f} |")
by = {}
for r in rows:
    by.setdefault(r[0], []).append(r)
print()
for w, rs in by.items():
    print(f"{w}: median new/old time {statistics.median(r[3]/r[2] for r in rs):.2f}, "
          f"median new/old speedup-vs-stock {statistics.median(r[5]/r[4] for r in rs):.2f}, passes {len(rs)}")
