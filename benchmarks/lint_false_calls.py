"""How often lint calls a shipped recipe's segment harmful (PL103), on the real embedded model.

Each recipe's template (recipes/*.yaml) is linted on ``--draws`` disjoint draws of ``--cases``
of its cases (promptlens.lint, no cache). With ``--suite``, the benchmark suite's clean twins
(benchmarks/suite: nothing planted, so every PL103 call is false) are linted instead, each on the
first ``--cases`` of its bench split in the suite's order (as a cases file lint reads the first
32 of), then the next ``--cases``, up to ``--draws``. Prints PL103 calls / segments tested per recipe and in
all, and writes every segment's per-case effects (the attribution lint computed) to ``--effects``,
so that benchmarks/stats_calibration.py can use their real shapes (``--real``).

    nice -n 10 python benchmarks/lint_false_calls.py --threads 1
    nice -n 10 python benchmarks/lint_false_calls.py --threads 1 --suite --attribution-only --draws 1 \
        --effects benchmarks/results/suite_clean_effects.csv
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default=str(ROOT / "recipes" / "*.yaml"))
    ap.add_argument("--cases", type=int, default=32, help="cases per lint run (lint's max_cases is 32)")
    ap.add_argument("--draws", type=int, default=4, help="disjoint draws of cases per recipe")
    ap.add_argument("--segmentation", default="sentence")
    ap.add_argument("--effects", type=Path, default=ROOT / "benchmarks" / "results" / "real_effects.csv")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--attribution-only", action="store_true",
                    help="run only the attribution PL103 rests on, with lint's own arguments (the other model "
                         "rules cost 2-3x more and do not change PL103)")
    ap.add_argument("--suite", action="store_true",
                    help="lint the benchmark suite's clean twins (their bench cases) instead of the recipes")
    ap.add_argument("--prompts", nargs="*", help="with --suite: these suite prompt ids, in this order (default: all)")
    ap.add_argument("--recompute", action="store_true",
                    help="no model: re-decide PL103 from the per-case effects in --effects with the current "
                         "promptlens.stats (interval method, correction)")
    args = ap.parse_args()
    if args.recompute:
        recompute(args.effects)
        return

    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    import promptlens.attribution as attribution
    from promptlens.backends.hf import load_backend
    from promptlens.lint import LintTarget, lint
    from promptlens.scoring import default_objective
    from promptlens.templates import is_messages, messages_of

    seen: list = []
    real_attribute = attribution.attribute

    def recording(*a, **kw):  # keep the attribution lint computes, for its per-case effects
        seen.append(real_attribute(*a, **kw))
        return seen[-1]

    if not args.attribution_only:
        attribution.attribute = recording
    backend = load_backend()
    rows, effects = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text, cases in targets(args):
            template = Path(tmp) / (f"{name}.json" if is_messages(text) else f"{name}.txt")
            template.write_text(json.dumps([{"role": m.role, "content": m.content} for m in messages_of(text)])
                                if is_messages(text) else text, encoding="utf-8")
            for d in range(max(1, min(args.draws, len(cases) // args.cases))):
                chunk = cases[d * args.cases : (d + 1) * args.cases][:32]  # lint's max_cases
                cfile = Path(tmp) / f"{name}-{d}.jsonl"
                cfile.write_text("".join(json.dumps({"vars": dict(c.vars), "target": c.target,
                                                     **({"choices": list(c.choices)} if c.choices else {})}) + "\n"
                                         for c in chunk), encoding="utf-8")
                seen.clear()
                if args.attribution_only:  # what lint's _model_rules calls, with the same arguments
                    attr = attribution.attribute(text, cases=chunk, backend=backend, method="ablation",
                                                 segmentation=args.segmentation, objective=default_objective(chunk),
                                                 seed=0)
                    pl103 = [f for f in attr.features if f.harmful]
                else:
                    result = lint([LintTarget(template, cfile, segmentation=args.segmentation)], backend=backend,
                                  cache_dir=None)
                    (attr,) = seen
                    pl103 = [f for f in result.findings if f.rule_id == "PL103"]
                rows.append({"recipe": name, "draw": d, "segments": len(attr.features), "pl103": len(pl103),
                             "raw_harmful": sum(f.raw_verdict == "harmful" for f in attr.features),
                             "correction": attr.correction})
                for f in attr.features:
                    for c, v in enumerate(f.per_case):
                        effects.append({"recipe": name, "draw": d, "segment": f"{name}:{d}:{f.index}",
                                        "text": f.segment.text.strip(), "case": c, "effect": v})
                args.effects.parent.mkdir(parents=True, exist_ok=True)
                pd.DataFrame(effects).to_csv(args.effects, index=False)  # after every draw: a cut run keeps them
                print(f"{name} draw {d}: {len(pl103)} PL103 of {len(attr.features)} segments "
                      f"(raw t-verdict harmful: {rows[-1]['raw_harmful']}); "
                      + "; ".join(f"{f.segment.text.strip()[:40]!r} {f.mean:+.3f} [{f.ci_low:+.3f}, {f.ci_high:+.3f}] "
                                  f"{f.verdict}" for f in attr.features), flush=True)
    df = pd.DataFrame(rows)
    by = df.groupby("recipe")[["segments", "pl103", "raw_harmful"]].sum()
    print(by.to_string())
    total = df[["segments", "pl103", "raw_harmful"]].sum()
    print(f"all: {total.pl103} PL103 of {total.segments} segments tested ({total.pl103 / total.segments:.1%}); "
          f"uncorrected: {total.raw_harmful} ({total.raw_harmful / total.segments:.1%}); correction "
          f"{df.correction.iloc[0]}; effects -> {args.effects}")


def targets(args: argparse.Namespace) -> list[tuple[str, str, list]]:
    """(name, template text, cases in draw order) of each template to lint."""
    if args.suite:
        from benchmarks.suite import load_suite

        suite = load_suite()
        prompts = [suite.prompt(i) for i in args.prompts] if args.prompts else suite.prompts
        return [(p.id, p.clean.flat, list(p.cases("bench"))) for p in prompts]
    import glob

    from promptlens.config import load_recipe

    out = []
    for path in sorted(glob.glob(args.recipes)):
        recipe = load_recipe(path)
        cases = list(recipe.cases)
        random.Random(0).shuffle(cases)
        out.append((Path(path).stem, recipe.template, cases))
    return out


def recompute(path: Path) -> None:
    """PL103 calls per recipe and draw from stored per-case effects, as lint decides them now."""
    import numpy as np
    import pandas as pd

    from promptlens import stats

    df = pd.read_csv(path)
    total = calls = raw_calls = 0
    for (recipe, draw), g in df.groupby(["recipe", "draw"], sort=True):
        wide = g.pivot_table(index="case", columns="segment", values="effect", sort=False)
        texts = g.drop_duplicates("segment").set_index("segment")["text"]
        iv = stats.intervals(wide.to_numpy())
        adj = stats.adjust(iv.p_value, stats.DEFAULT_CORRECTION)
        said = [stats.verdict(m, q, iv.n, iv.confidence) for m, q in zip(iv.mean, adj)]
        raw = [stats.verdict(m, p, iv.n, iv.confidence) for m, p in zip(iv.mean, iv.p_value)]
        total += len(said)
        calls += said.count("harmful")
        raw_calls += raw.count("harmful")
        print(f"{recipe} draw {draw}: " + "; ".join(
            f"{str(texts[c])[:30]!r} {m:+.3f} [{lo:+.3f}, {hi:+.3f}] {v}" + (f" (uncorrected {r})" if r != v else "")
            for c, m, lo, hi, v, r in zip(wide.columns, iv.mean, iv.low, iv.high, said, raw)))
    print(f"all: {calls} PL103 of {total} segments tested ({calls / total:.1%}); uncorrected {raw_calls} "
          f"({raw_calls / total:.1%}); {stats.describe(32, stats.DEFAULT_CONFIDENCE, stats.DEFAULT_METHOD)}, "
          f"correction {stats.CORRECTION_NAMES[stats.DEFAULT_CORRECTION]}")


if __name__ == "__main__":
    main()
