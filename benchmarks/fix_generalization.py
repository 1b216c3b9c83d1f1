"""Diagnosis: does fix's candidate set hold edits that generalise, and which rule picks them?

For a recipe, split the cases exactly as ``promptlens fix`` does (train, validation), and take a
disjoint "extra" pool from the remaining cases (never validation). Build the single-edit
candidates fix builds for every segment (strategy ``all``; paraphrases only with --paraphrase),
and score each single edit's per-case gain over the original (log-prob and margin) on train,
extra and validation. Prints one row per candidate: mean gains and a one-sided t lower bound on
train (promptlens.stats, as fix uses), so a selection rule can be checked against validation without being tuned on it.

    python benchmarks/fix_generalization.py recipes/sports_understanding.yaml --extra 32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("recipe")
    p.add_argument("--extra", type=int, default=32, help="cases beyond train+validation, disjoint from both")
    p.add_argument("--paraphrase", action="store_true")
    p.add_argument("--json")
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    from promptlens.backends.hf import load_backend
    from promptlens.cases import split_cases
    from promptlens.config import load_recipe
    from promptlens.rewrites import RewriteConfig, candidates
    from promptlens.scoring import default_objective, score_prompts
    from promptlens.stats import lower_bound
    from promptlens.segments import fill, join, segment
    from promptlens.similarity import Similarity

    recipe = load_recipe(args.recipe)
    train, rest = split_cases(recipe.cases, n_train=recipe.n_train, frac_train=recipe.split, seed=recipe.seed)
    valid = rest[: recipe.n_validation] if recipe.n_validation else rest
    extra = rest[len(valid): len(valid) + args.extra]
    objective = default_objective(train)
    backend = load_backend()
    sim = Similarity()
    t0 = time.monotonic()
    segments = segment(recipe.template, recipe.segmentation, tokenizer=backend.tokenizer)
    kinds = tuple(k for k in (recipe.rewrites or ("delete", "paraphrase", "synonym", "scaffold", "alternative"))
                  if args.paraphrase or k != "paraphrase")
    config = RewriteConfig(threshold=recipe.threshold, alternatives=dict(recipe.alternatives), seed=recipe.seed,
                           kinds=kinds)
    cands = [("original", -1, recipe.template, 1.0)]
    for i, s in enumerate(segments):
        if not s.feature or not s.text.strip():
            continue
        for rw in candidates(segments, i, original=recipe.template, backend=backend, similarity=sim, cases=train,
                             config=config)[1:]:
            cands.append((rw.kind, i, join(segments, {i: rw.text}), rw.similarity))
    print(f"{len(cands) - 1} candidates in {time.monotonic() - t0:.0f} s", file=sys.stderr)

    def scores(template, cases):
        (row,) = score_prompts(backend, [[fill(template, c.vars) for c in cases]], cases)
        return [(s.logprob, s.margin) for s in row]

    sets = {"train": train, "extra": extra, "valid": valid}
    base = {k: scores(recipe.template, v) for k, v in sets.items()}
    rows = []
    for kind, i, template, similarity in cands:
        row = {"kind": kind, "segment": i, "similarity": round(similarity, 3), "template": template}
        for name, cases in sets.items():
            if not cases:
                continue
            sc = base[name] if kind == "original" else scores(template, cases)
            dl = [a[0] - b[0] for a, b in zip(sc, base[name])]
            row[f"{name}_lp"] = sum(dl) / len(dl)
            row[f"{name}_lp_low"] = lower_bound(dl)
            if objective == "margin":
                dm = [a[1] - b[1] for a, b in zip(sc, base[name])]
                row[f"{name}_m"] = sum(dm) / len(dm)
                row[f"{name}_m_low"] = lower_bound(dm)
            if kind == "original":
                row[f"{name}_abs_lp"] = sum(s[0] for s in sc) / len(sc)
                if objective == "margin":
                    row[f"{name}_abs_m"] = sum(s[1] for s in sc) / len(sc)
        rows.append(row)
        diff = " | ".join(
            f"{n}: lp {row[n + '_lp']:+.3f} (low {row[n + '_lp_low']:+.3f})"
            + (f" m {row[n + '_m']:+.3f} (low {row[n + '_m_low']:+.3f})" if objective == "margin" else "")
            for n in sets if f"{n}_lp" in row)
        new = template.replace("\n", "\\n") if kind != "original" else ""
        print(f"{kind:<11} s{i:<2} sim {similarity:.2f} {diff}\n      {new[:160]}", flush=True)
    print(f"sizes: train {len(train)}, extra {len(extra)}, valid {len(valid)}; objective {objective}; "
          f"{time.monotonic() - t0:.0f} s", file=sys.stderr)
    print("original:", {k: v for k, v in rows[0].items() if "abs" in k})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
