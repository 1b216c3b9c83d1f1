"""Build the suite: message-list files and ``manifest.json`` from ``spec.py`` and the shipped dev data.

For each prompt of ``spec.SPECS``: the task's dev records (minus those over ``max_input_words``)
are shuffled with a seed; the first few are the few-shot examples (labels alternated on choice
tasks with ``balanced``), the rest are the cases, in that order. Each candidate fault is planted
into a copy of the clean prompt and scored against it on the first ``--harm-cases`` cases (the
harm split): planted minus clean target log-prob per case, a paired t-interval at n - 1 degrees
of freedom; on choice tasks the margin and accuracy beside it. A fault is kept when the whole
95% interval lies below zero and the mean harm is at least MIN_HARM; the others are dropped and
recorded as dropped, with their measured harm.

    nice -n 10 python benchmarks/suite/build.py [--seed 0] [--harm-cases 32] [--threads 1]

The suite is fixed once built: rebuilding rewrites ``prompts/`` and ``manifest.json``, and any
change must be recorded in ``benchmarks/suite/README.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
from scipy import stats
from tqdm import tqdm

from benchmarks.suite import MANIFEST, ROOT, dev_records, record_case, render, units
from benchmarks.suite.spec import SPECS, PromptSpec
from promptlens.segments import fill
from promptlens.types import Case

CONFIDENCE = 0.95
# A fault must cost at least this much (nats, mean over the harm cases) besides being significant:
# fixed before any detection or repair ran, so that the suite holds faults a user would care about
# (0.1 nats is a 10% drop of the target's probability) and not 0.005-nat effects that 32 cases
# happen to resolve.
MIN_HARM = 0.1
DIGITS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}


def escape(text: str) -> str:
    """Literal text inside a template: braces doubled."""
    return text.replace("{", "{{").replace("}", "}}")


def draw(spec: PromptSpec, seed: int) -> tuple[list[int], list[int]]:
    """(example record ids, case record ids): seeded, disjoint, from the task's dev records."""
    records = dev_records()
    ids = [i for i, r in enumerate(records) if r["task"] == spec.task
           and (spec.max_input_words is None or len(r["input"].split()) <= spec.max_input_words)]
    if not ids:
        raise SystemExit(f"{spec.id}: no dev records of task {spec.task!r}")
    random.Random(f"suite:{seed}:{spec.id}").shuffle(ids)
    if not spec.balanced:
        return ids[: spec.examples], ids[spec.examples :]
    labels = list(records[ids[0]]["choices"])
    examples: list[int] = []
    for k in range(spec.examples):  # alternate labels in choice order, first record of each
        want = labels[k % len(labels)]
        examples.append(next(i for i in ids if i not in examples and records[i]["target"] == want))
    return examples, [i for i in ids if i not in examples]


def clean_messages(spec: PromptSpec, examples: Sequence[int]) -> list[dict[str, str]]:
    records = dev_records()
    messages = [{"role": "system", "content": "\n".join(spec.system)}]
    for i in examples:
        messages.append({"role": "user", "content": spec.user.replace("{input}", escape(records[i]["input"]))})
        messages.append({"role": "assistant", "content": escape(records[i]["target"])})
    messages.append({"role": "user", "content": spec.user})
    return messages


def wrong_answer(spec: PromptSpec, examples: Sequence[int], k: int) -> str:
    """A wrong answer of the right kind: the next label on choice tasks, else the next example's target."""
    records = dev_records()
    rec = records[examples[k]]
    if rec.get("choices"):
        labels = list(rec["choices"])
        return labels[(labels.index(rec["target"]) + 1) % len(labels)]
    for step in range(1, len(examples)):
        other = records[examples[(k + step) % len(examples)]]["target"]
        if other != rec["target"]:
            return other
    raise SystemExit(f"{spec.id}: every example has the same target; no wrong answer to plant")


def plant(spec: PromptSpec, clean: list[dict[str, str]], examples: Sequence[int], kind: str,
          fault: tuple) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The clean prompt with one fault planted, and the fault's record (unit, message, text)."""
    op, where, text = fault
    messages = [dict(m) for m in clean]
    if op == "answer":
        rec = dev_records()[examples[where]]
        words = rec["target"].split()
        text = text.format(input=rec["input"], target=rec["target"], other=wrong_answer(spec, examples, where),
                           upper=rec["target"].upper(), lower=rec["target"].lower(),
                           digits=DIGITS.get(rec["target"], rec["target"]),
                           commas=", ".join(words), reversed=" ".join(reversed(words)))
        message = 2 + 2 * where
        messages[message]["content"] = escape(text)
        unit = f"example_{where}"
    else:
        lines = list(spec.system)
        if op == "insert":
            lines.insert(where, text)
        elif op == "replace":
            lines[where] = text
        else:
            raise SystemExit(f"{spec.id}/{kind}: unknown fault operation {op!r}")
        messages[0]["content"] = "\n".join(lines)
        message, unit = 0, f"system_{where}"
    return messages, {"kind": kind, "unit": unit, "message": message, "text": text, "operation": op}


def paired_t(diffs: np.ndarray) -> dict[str, float]:
    """Mean of paired differences with a t-interval (n - 1 df) and the two-sided p-value."""
    n = len(diffs)
    mean, se = float(diffs.mean()), float(diffs.std(ddof=1) / np.sqrt(n))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1)) if se > 0 else (0.0 if mean else 1.0)
    return {"mean": round(mean, 4), "low": round(mean - half, 4), "high": round(mean + half, 4), "p": p}


def measure(backend: Any, variants: Sequence[Sequence[Mapping[str, str]]], cases: Sequence[Case]) -> list[list[Any]]:
    """Scores of each variant (rendered with the chat template, filled per case) on every case."""
    from promptlens.scoring import score_prompts

    rendered = [render(v, backend.tokenizer) for v in variants]
    return score_prompts(backend, [[fill(t, c.vars) for c in cases] for t in rendered], cases)


def harm(clean: Sequence[Any], planted: Sequence[Any]) -> dict[str, Any]:
    lp = paired_t(np.array([p.logprob - c.logprob for p, c in zip(planted, clean)]))
    out: dict[str, Any] = {"n": len(clean), "p_value": lp.pop("p"), "logprob": lp}
    if clean[0].margin is not None:
        m = paired_t(np.array([p.margin - c.margin for p, c in zip(planted, clean)]))
        m.pop("p")
        out.update(margin=m, accuracy_clean=round(float(np.mean([c.correct for c in clean])), 4),
                   accuracy_planted=round(float(np.mean([p.correct for p in planted])), 4))
    return out


def shape(messages: Sequence[Mapping[str, str]], tokenizer: Any, case: Case) -> dict[str, int]:
    """Units and tokens of a prompt (rendered, filled with one case)."""
    text = fill(render(messages, tokenizer), case.vars)
    return {"units": len(units(messages)), "tokens": len(tokenizer(text, add_special_tokens=True)["input_ids"])}


def check_rendering(backend: Any) -> float:
    """|difference| between our rendering on the raw backend and the library's own chat path, on
    a one-user-turn prompt: they must score the same text the same."""
    from promptlens.backends.hf import HFBackend

    chat = HFBackend(backend.model, backend.tokenizer, name=backend.name, raw=False)
    prompt, target = "Give the plural of the noun. Noun: cat", "cats"
    ours = backend.token_logprobs([render([{"role": "user", "content": prompt}], backend.tokenizer)], [[target]])
    theirs = chat.token_logprobs([prompt], [[target]])
    return abs(sum(ours[0][0]) - sum(theirs[0][0]))


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=ROOT, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_prompt(spec: PromptSpec, backend: Any, seed: int, n_harm: int, out: Path) -> dict[str, Any]:
    examples, case_ids = draw(spec, seed)
    if len(case_ids) < n_harm:
        raise SystemExit(f"{spec.id}: {len(case_ids)} cases, fewer than --harm-cases {n_harm}")
    records = dev_records()
    cases = [record_case(records[i], i) for i in case_ids[:n_harm]]
    clean = clean_messages(spec, examples)
    planted = {name: plant(spec, clean, examples, name, f) for name, f in spec.faults.items()}
    scores = measure(backend, [clean, *(m for m, _ in planted.values())], cases)
    folder = out / spec.id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clean.json").write_text(json.dumps(clean, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    base = {"name": "clean", "file": f"prompts/{spec.id}/clean.json", **shape(clean, backend.tokenizer, cases[0])}
    kept, dropped = [], []
    for (name, (messages, fault)), row in zip(planted.items(), scores[1:]):
        h = harm(scores[0], row)
        entry = {"name": name, "fault": fault, "harm": h, **shape(messages, backend.tokenizer, cases[0])}
        sig, big = h["logprob"]["high"] < 0, h["logprob"]["mean"] <= -MIN_HARM
        tqdm.write(f"{spec.id:20s} {name:22s} {h['logprob']['mean']:+.3f} [{h['logprob']['low']:+.3f}, "
                   f"{h['logprob']['high']:+.3f}] {'kept' if sig and big else 'DROPPED'}", file=sys.stderr)
        if sig and big:
            entry["file"] = f"prompts/{spec.id}/{name}.json"
            (folder / f"{name}.json").write_text(json.dumps(messages, indent=1, ensure_ascii=False) + "\n",
                                                 encoding="utf-8")
            kept.append(entry)
        else:
            dropped.append({**entry, "reason": "harm not significant: the 95% interval reaches 0 or above" if not sig
                            else f"significant but smaller than {MIN_HARM} nats"})
    return {"id": spec.id, "task": spec.task, "clean": base, "variants": kept, "dropped": dropped,
            "example_records": examples, "case_records": case_ids, "harm_cases": n_harm,
            "clean_score": {"logprob": round(float(np.mean([s.logprob for s in scores[0]])), 4),
                            **({"accuracy": round(float(np.mean([s.correct for s in scores[0]])), 4)}
                               if scores[0][0].correct is not None else {})}}


def harm_table(manifest: Mapping[str, Any]) -> str:
    """The manifest's faults, kept and dropped, as a markdown table (for README.md)."""
    rows = ["| prompt | task | fault | unit | kept | log-prob harm [95% t-interval] | margin harm | accuracy clean -> planted |",
            "|---|---|---|---|---|---|---|---|"]

    def iv(d: Mapping[str, float] | None) -> str:
        return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else "-"

    for p in manifest["prompts"]:
        for v, kept in [*((v, "yes") for v in p["variants"]), *((v, "no: " + v["reason"]) for v in p["dropped"])]:
            h = v["harm"]
            acc = f"{h['accuracy_clean']:.2f} -> {h['accuracy_planted']:.2f}" if "accuracy_clean" in h else "-"
            rows.append(f"| {p['id']} | {p['task']} | {v['name']} | {v['fault']['unit']} | {kept} | "
                        f"{iv(h['logprob'])} | {iv(h.get('margin'))} | {acc} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--harm-cases", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="rebuild these prompt ids only (the others stay as they are)")
    ap.add_argument("--table", nargs="?", const=str(MANIFEST), metavar="MANIFEST",
                    help="build nothing: print the harm table of a manifest (default: the suite's)")
    args = ap.parse_args()
    if args.table:
        print(harm_table(json.loads(Path(args.table).read_text())))
        return
    import torch

    from promptlens.backends.hf import load_backend

    torch.set_num_threads(args.threads)
    backend = load_backend(raw=True)
    diff = check_rendering(backend)
    if diff > 1e-4:
        raise SystemExit(f"our chat rendering scores {diff:.2g} nats away from the library's chat path")
    out = ROOT / "prompts"
    old = json.loads(MANIFEST.read_text()) if MANIFEST.is_file() and args.only else {"prompts": []}
    keep = {p["id"]: p for p in old["prompts"]}
    specs = [s for s in SPECS if not args.only or s.id in args.only]
    for spec in tqdm(specs, desc="suite prompts", file=sys.stderr):
        if (out / spec.id).exists():
            shutil.rmtree(out / spec.id)
        keep[spec.id] = build_prompt(spec, backend, args.seed, args.harm_cases, out)
    manifest = {
        "seed": args.seed,
        "built": {"date": datetime.date.today().isoformat(), "commit": commit(), "model": backend.name,
                  "harm_cases": args.harm_cases, "confidence": CONFIDENCE, "min_harm_nats": MIN_HARM,
                  "rendering_check_nats": diff,
                  "statistic": "paired t-interval of planted minus clean target log-prob, n - 1 df"},
        "prompts": [keep[s.id] for s in SPECS if s.id in keep],
    }
    MANIFEST.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {MANIFEST}", file=sys.stderr)


if __name__ == "__main__":
    main()
