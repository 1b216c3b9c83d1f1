"""Calibration of promptlens.stats: interval coverage and false "harmful" calls by number of cases.

For each per-case effect distribution (normal; heavy-tailed t with 3 degrees of freedom; skewed
log-normal and a log-prob-difference mixture, both ways round; optionally real per-case effects
from the embedded model, centred), each n and each interval method (t, percentile bootstrap,
BCa), draws ``--sims`` samples of n cases and reports:

- coverage: the share of draws whose interval holds the true mean (nominal: the confidence);
- false calls: the share of draws with true mean 0 called harmful or helpful (nominal: 1 - conf),
  and called harmful alone (at most 1 - conf; half of it for a symmetric distribution). A
  distribution's mirror image swaps the two sides, so its "harmful" rate is the "helpful" one here;
- per prompt of ``--segments`` clean segments: the share of prompts with any false call, raw and
  after Benjamini-Hochberg and Holm.

    python benchmarks/stats_calibration.py --sims 4000
    python benchmarks/stats_calibration.py --real benchmarks/results/real_effects.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from promptlens import stats  # noqa: E402


def _lp_mix(rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    """Log-prob differences as the embedded model makes them: most cases move a little, a few
    (15%) a lot, one way (exponential, scale 1.5 nats)."""
    return rng.normal(0, 0.1, size) + (rng.random(size) < 0.15) * rng.exponential(1.5, size)


# name -> (sampler, true mean); samplers return effects with the stated mean.
def _lp_diff(rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    """The gap between two Gumbel log-likelihoods (scale 0.3) minus a 1-in-5 extra drop
    (exponential, 0.5 nats): skewness -0.5, excess kurtosis 2.2 (as in tests/test_stats.py)."""
    return rng.gumbel(0, 0.3, size) - rng.gumbel(0, 0.3, size) - (rng.random(size) < 0.2) * rng.exponential(0.5, size)


DISTRIBUTIONS = {
    "normal": (lambda r, s: r.normal(0, 1, s), 0.0),
    "t3": (lambda r, s: r.standard_t(3, s), 0.0),
    "lp-diff": (_lp_diff, -0.1),
    "logn0.25": (lambda r, s: r.lognormal(0, 0.25, s), float(np.exp(0.25 ** 2 / 2))),  # skewness 0.78
    "logn0.5": (lambda r, s: r.lognormal(0, 0.5, s), float(np.exp(0.125))),  # skewness 1.75
    "logn1": (lambda r, s: r.lognormal(0, 1, s), float(np.exp(0.5))),  # skewness 6.2
    "lp-mix": (_lp_mix, 0.15 * 1.5),  # 85% of cases within 0.1 nats, 15% far out: skewness 2.4
}


def real_distribution(path: Path) -> tuple:
    """Per-case effects measured on the model (one column ``effect``, one row per case and
    segment), each segment centred at its own mean, pooled: realistic shapes with mean 0."""
    import pandas as pd

    df = pd.read_csv(path)
    by = df.groupby("segment")["effect"]
    sd = by.transform("std")
    keep = sd > 1e-9  # a segment with the same effect on every case has no shape to lend
    centred = ((df["effect"] - by.transform("mean"))[keep] / sd[keep]).to_numpy()  # each segment's own shape
    return (lambda r, s: r.choice(centred, size=s), 0.0)


def draws(dist: str, n: int, sims: int, rng: np.random.Generator, dists: dict) -> tuple[np.ndarray, float]:
    sample, mu = dists[dist]
    return sample(rng, (n, sims)), mu


def calibrate(dists: dict, ns: list[int], methods: list[str], sims: int, confidence: float, seed: int) -> list[dict]:
    rows = []
    for dist in dists:
        for n in ns:
            rng = np.random.default_rng(seed)
            x, mu = draws(dist, n, sims, rng, dists)
            for method in methods:
                iv = stats.intervals(x, confidence=confidence, method=method, seed=seed, resamples=999)
                cover = float(((iv.low <= mu) & (mu <= iv.high)).mean())
                iv0 = stats.intervals(x - mu, confidence=confidence, method=method, seed=seed, resamples=999)
                calls = [stats.verdict(m, p, n, confidence) for m, p in zip(iv0.mean, iv0.p_value)]
                rows.append({"dist": dist, "n": n, "method": method, "coverage": cover,
                             "false_call": float(np.mean([c in ("harmful", "helpful") for c in calls])),
                             "false_harmful": float(np.mean([c == "harmful" for c in calls])),
                             "false_helpful": float(np.mean([c == "helpful" for c in calls]))})
    return rows


def family(dists: dict, n: int, segments: int, prompts: int, confidence: float, seed: int) -> list[dict]:
    """Share of clean prompts (every segment's true effect 0) with at least one false call."""
    rows = []
    alpha = 1 - confidence
    for dist in dists:
        rng = np.random.default_rng(seed)
        x, mu = draws(dist, n, segments * prompts, rng, dists)
        p = stats.intervals(x - mu, confidence=confidence).p_value.reshape(prompts, segments)
        row = {"dist": dist, "n": n, "segments": segments}
        for corr in stats.CORRECTIONS:
            adj = np.stack([stats.adjust(pp, corr) for pp in p])
            row[f"any_{corr}"] = float((adj < alpha).any(1).mean())
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sims", type=int, default=4000)
    ap.add_argument("--ns", default="2,3,4,8,16,32")
    ap.add_argument("--methods", default="skew-t,t,hall,percentile,bca")
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--real", type=Path, help="CSV of real per-case effects (columns segment, effect)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    dists = dict(DISTRIBUTIONS)
    if args.real:
        dists["real"] = real_distribution(args.real)
    ns = [int(v) for v in args.ns.split(",")]
    saved, stats.MIN_CASES = stats.MIN_CASES, 2  # measure every n, below the minimum too
    try:
        rows = calibrate(dists, ns, args.methods.split(","), args.sims, args.confidence, args.seed)
    finally:
        stats.MIN_CASES = saved
    print(f"nominal: coverage >= {args.confidence}, false call <= {1 - args.confidence:.3f}, "
          f"false harmful <= {(1 - args.confidence) / 2:.4f}; {args.sims} draws per cell")
    print(f"{'dist':12s} {'n':>3s} {'method':10s} {'coverage':>8s} {'false':>7s} {'f.harm':>7s} {'f.help':>7s}")
    for r in rows:
        print(f"{r['dist']:12s} {r['n']:>3d} {r['method']:10s} {r['coverage']:8.3f} {r['false_call']:7.3f} "
              f"{r['false_harmful']:7.3f} {r['false_helpful']:7.3f}")
    print(f"\nclean prompts of {args.segments} segments ({stats.DEFAULT_METHOD}), share with any false call:")
    for n in (8, 32):
        for r in family(dists, n, args.segments, max(200, args.sims // 4), args.confidence, args.seed):
            print(f"{r['dist']:12s} n={n:<3d} raw {r['any_none']:.3f}  bh {r['any_bh']:.3f}  holm {r['any_holm']:.3f}")


if __name__ == "__main__":
    main()
