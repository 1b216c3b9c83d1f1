"""Detection of the suite's planted faults, per attribution method (see benchmarks/suite/).

Every suite prompt is a message list; each unit (a system-prompt sentence, or a few-shot example's
user and assistant turn together) is one segment, so every planted fault is exactly one segment.
For each method and each planted variant we rank the units by pooled effect (most negative first)
on the prompt's benchmark cases (disjoint from the cases the faults were selected on) and record
whether the fault unit ranks first (hit@1), in the top 3, and whether it is called harmful. On the
clean twins, every harmful call is a false positive: nothing was planted there.

"Harmful" is the call lint makes (PL103): the pooled interval of the unit's effect lies wholly
below zero (``SegmentAttribution.harmful``).

Until message templates land in promptlens, a prompt is rendered with the model's chat template
into one raw-completion template whose units are marked spans (``benchmarks.suite.span_template``),
and scored on a ``raw=True`` backend: removing a unit removes its sentence, or its turn pair.

    nice -n 10 python benchmarks/suite_detection.py [--methods ...] [--cases 12] [--prompts ...]
        [--method-cases ig=2] [--out benchmarks/results] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import torch

from benchmarks.suite import Variant, load_suite, span_template, units
from promptlens.approx import MODES
from promptlens.attribution import METHODS, _problem, attribute, model_answers
from promptlens.names import BASELINES
from promptlens import stats
from promptlens.backends.hf import HFBackend, load_backend
from promptlens.templates import MARK_RE
from promptlens.types import Attribution


def harmful_units(result: Attribution) -> list[int]:
    """Feature positions lint would report as harmful (PL103): the whole interval below zero."""
    return [k for k, f in enumerate(result.features) if f.harmful]


def prompt_for(variant: Variant, segmentation: str, backends: dict[str, Any]) -> tuple[str, Any, str]:
    """(template, backend, promptlens segmentation) for one of the benchmark's segmentations.

    ``units``: system sentences and whole examples, as marked spans of the chat-rendered text on
    the raw backend. ``unit`` / ``sentence`` / ``example``: promptlens's own message segmentations
    of the flat message template on the chat backend (``unit``: the same units as ``units``, each
    system sentence and each example whole, which the ``sibling`` baseline needs; every sentence
    of every message; or each example and each other message whole)."""
    if segmentation == "units":
        return span_template(variant.messages, backends["raw"].tokenizer), backends["raw"], "span"
    return variant.flat, backends["chat"], segmentation  # unit, sentence, example: promptlens's own


def fault_feature(result: Attribution, variant: Variant, segmentation: str) -> int:
    """Position among the features of the one feature that holds the fault."""
    fault, feats = variant.fault, result.features
    if segmentation == "units":
        hits = [k for k, f in enumerate(feats) if f.segment.name == fault.unit]
    elif segmentation == "unit":  # the same units in the same order (checked in run_one)
        hits = [k for k, u in enumerate(units(variant.messages)) if u.label == fault.unit]
    elif segmentation == "example":  # the example (or the whole message) the fault's message is in
        hits = [k for k, f in enumerate(feats) if f.segment.message is not None
                and f.segment.message <= fault.message < f.segment.message + len(MARK_RE.findall(f.segment.text))]
    else:  # sentence: the planted system sentence, or the first sentence of the planted answer
        inside = [k for k, f in enumerate(feats) if f.segment.message == fault.message]
        hits = inside[:1] if fault.operation == "answer" else [
            k for k in inside if feats[k].segment.text.strip() == fault.text.strip()]
    if len(hits) != 1:
        raise AssertionError(f"{variant.id}: the fault is not in exactly one {segmentation} feature: {hits}")
    return hits[0]


def label(method: str, args: argparse.Namespace) -> str:
    """The method's name in the tables: with its mode, baseline and segmentation where not the default."""
    return (method + (f"/{args.mode}" if args.mode != "exact" else "")
            + (f" {args.baseline}" if args.baseline != "remove" else "")
            + (f" @{args.segmentation}" if args.segmentation != "units" else ""))


def check_units(result: Attribution, variant: Variant, segmentation: str) -> None:
    """The attribution's features are the prompt's units, in order (units / unit segmentations)."""
    labels = [u.label for u in units(variant.messages)]
    if segmentation == "units":
        names = [f.segment.name for f in result.features]
    elif segmentation == "unit":
        names = [lab if (f.segment.kind == "example") == lab.startswith("example") else f.segment.text[:30]
                 for f, lab in zip(result.features, labels)]
    else:
        return
    if names != labels:
        raise AssertionError(f"{variant.id}: attribution units {names} are not the prompt's units {labels}")


def run_one(backends: dict[str, Any], variant: Variant, cases: list, method: str,
            args: argparse.Namespace) -> dict[str, Any]:
    template, backend, segmentation = prompt_for(variant, args.segmentation, backends)
    kw: dict[str, Any] = {}
    if method in args.samples:
        kw["n_samples"] = args.samples[method]
    if method == "ig":
        kw["ig_steps"] = args.ig_steps
    if args.mode != "exact":  # promptlens.approx: an estimate, its most harmful units then checked exactly
        kw["mode"] = args.mode
    t = time.perf_counter()
    result = attribute(template, cases=cases, backend=backend, method=method, segmentation=segmentation,
                       objective=args.objective, seed=args.seed, baseline=args.baseline, **kw)
    seconds = time.perf_counter() - t
    check_units(result, variant, args.segmentation)
    order = sorted(range(len(result.features)), key=lambda k: result.features[k].mean)  # most harmful first
    harmful = harmful_units(result)
    row: dict[str, Any] = {
        "prompt": variant.prompt_id, "variant": variant.name, "kind": variant.fault.kind if variant.fault else "clean",
        "method": label(method, args), "segmentation": args.segmentation, "baseline": args.baseline,
        "n_samples": kw.get("n_samples", ""), "ig_steps": kw.get("ig_steps", ""),
        "cases": len(cases), "units": len(result.features),
        "forward_passes": result.forward_passes, "tokens": result.tokens_computed, "seconds": round(seconds, 2),
        "harmful_calls": len(harmful), "top": result.features[order[0]].segment.name or order[0],
        "top_mean": round(result.features[order[0]].mean, 4),
    }
    if variant.fault is not None:
        k = fault_feature(result, variant, args.segmentation)
        fault, rank = result.features[k], order.index(k) + 1
        row.update(rank=rank, hit1=rank == 1, top3=rank <= 3, fault_called_harmful=fault.harmful,
                   other_harmful_calls=len([h for h in harmful if h != k]), fault_mean=round(fault.mean, 4),
                   fault_low=round(fault.ci_low, 4), fault_high=round(fault.ci_high, 4),
                   harm=variant.harm.logprob.mean if variant.harm else None)
    if result.convergence_delta is not None:
        row["ig_delta"] = round(result.convergence_delta, 4)
    if args.baseline == "answer":  # what the model said instead (cached: no new generation here)
        answers = model_answers(_problem(template, None, cases, backend, args.objective, segmentation, False))
        row.update(answers_differ=sum(not a.same for a in answers), examples=len(answers),
                   gen_seconds=round(sum(a.seconds for a in answers), 2),
                   gen_tokens=sum(a.prompt_tokens + a.new_tokens - 1 for a in answers),
                   model_answers=json.dumps({a.name: a.model_answer for a in answers}))
        if variant.fault is not None and variant.fault.operation == "answer":
            row["fault_model_answer"] = next((a.model_answer for a in answers if a.prompt_answer == variant.fault.text), None)
    # Every feature's per-case effects, so other statistics can be applied later without a rerun.
    row["per_case"] = json.dumps([[round(v, 5) for v in f.per_case] for f in result.features])
    row["fault_feature"] = k if variant.fault is not None else None
    return row


# The harmful-call rules recomputed from the stored per-case effects: (interval, correction) of
# promptlens.stats. "lint" is lint's PL103 rule exactly (its defaults: skew-adjusted t-interval,
# Benjamini-Hochberg across the prompt's units, 95%); "holm" the same with Holm; "t_bh" a plain
# t-test with BH (the rule this script computed before promptlens/stats.py landed).
RULES = {"lint": (stats.DEFAULT_METHOD, stats.DEFAULT_CORRECTION), "holm": (stats.DEFAULT_METHOD, "holm"),
         "t_bh": ("t", "bh")}


def rule_harmful(per_case: np.ndarray, interval: str = stats.DEFAULT_METHOD,
                 correction: str = stats.DEFAULT_CORRECTION) -> np.ndarray:
    """Harmful calls [features] from per-case effects [cases, features], decided as promptlens
    decides them (``stats.intervals`` -> ``stats.adjust`` across the units -> ``stats.verdict``)."""
    iv = stats.intervals(per_case, method=interval)
    adjusted = stats.adjust(iv.p_value, correction)
    return np.array([stats.verdict(m, q, iv.n, iv.confidence) == "harmful" for m, q in zip(iv.mean, adjusted)])


def t_harmful(per_case: np.ndarray, correction: str) -> np.ndarray:
    """A two-sided t-test per unit, adjusted across the prompt's units (BH or Holm), at 0.05."""
    return rule_harmful(per_case, "t", correction)


def add_t_calls(df: pd.DataFrame) -> pd.DataFrame:
    """Columns with every rule's calls, from the stored per-case effects."""
    df = df.copy()
    for name, (interval, correction) in RULES.items():
        calls = [rule_harmful(np.array(json.loads(pc)).T, interval, correction) for pc in df.per_case]
        df[f"harmful_calls_{name}"] = [int(x.sum()) for x in calls]
        df[f"fault_called_{name}"] = [bool(x[int(k)]) if pd.notna(k) else None for x, k in zip(calls, df.fault_feature)]
    return df


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: detection on the planted variants, false harmful calls on the clean twins.
    ``harmful`` columns: the call the attribution made when it ran (runs before promptlens/stats.py
    landed: the percentile bootstrap, no correction); ``lint`` / ``holm`` / ``t_bh``: the rules of
    ``RULES`` recomputed from the per-case effects, the same for every run."""
    df = add_t_calls(df) if "per_case" in df else df
    planted, clean = df[df.kind != "clean"], df[df.kind == "clean"]
    agg = dict(variants=("hit1", "size"), hit1=("hit1", "mean"), top3=("top3", "mean"),
               chance_hit1=("units", lambda u: float(np.mean(1.0 / u))),
               chance_top3=("units", lambda u: float(np.mean(np.minimum(1.0, 3.0 / u)))),
               fault_called_harmful=("fault_called_harmful", "mean"))
    fp_agg = dict(clean_twins=("units", "size"), clean_units=("units", "sum"), false_harmful=("harmful_calls", "sum"))
    for c in RULES if "per_case" in df else ():
        agg[f"fault_called_{c}"] = (f"fault_called_{c}", "mean")
        fp_agg[f"false_{c}"] = (f"harmful_calls_{c}", "sum")
        fp_agg[f"twins_with_a_{c}_call"] = (f"harmful_calls_{c}", lambda h: float(np.mean(np.asarray(h) > 0)))
    agg.update(forward_passes=("forward_passes", "mean"), **({"tokens": ("tokens", "mean")} if "tokens" in df else {}),
               seconds=("seconds", "mean"), cases=("cases", "mean"))
    summary = planted.groupby("method").agg(**agg)
    fp = clean.groupby("method").agg(**fp_agg)
    fp["false_harmful_rate"] = fp.false_harmful / fp.clean_units
    for c in RULES if "per_case" in df else ():
        fp[f"false_{c}_rate"] = fp[f"false_{c}"] / fp.clean_units
    return summary.join(fp, how="outer")


def by_kind(df: pd.DataFrame) -> pd.DataFrame:
    df = add_t_calls(df) if "per_case" in df else df.assign(fault_called_lint=df.fault_called_harmful)
    planted = df[df.kind != "clean"]
    return planted.groupby(["method", "kind"]).agg(
        n=("hit1", "size"), hit1=("hit1", "mean"), top3=("top3", "mean"), called_lint=("fault_called_lint", "mean"),
        mean_rank=("rank", "mean"), fault_effect=("fault_mean", "mean"), measured_harm=("harm", "mean"))


def by_variant(df: pd.DataFrame) -> pd.DataFrame:
    """One row per attributed variant: the fault's rank and effect beside its measured harm."""
    df = add_t_calls(df) if "per_case" in df else df
    rows = []
    for r in df.itertuples(index=False):
        fault = (f"{r.rank:.0f}/{r.units}", f"{r.fault_mean:+.3f} [{r.fault_low:+.3f}, {r.fault_high:+.3f}]",
                 f"{r.harm:+.3f}") if r.kind != "clean" else ("-", "-", "-")
        rows.append({"method": r.method, "prompt": r.prompt, "variant": r.variant, "rank": fault[0],
                     "fault effect (removing it)": fault[1], "measured harm": fault[2],
                     "harmful calls (at run / lint)": f"{r.harmful_calls} / {getattr(r, 'harmful_calls_lint', '-')}",
                     "top unit": r.top})
    return pd.DataFrame(rows).set_index("method")


def markdown(df: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs the optional tabulate package)."""
    df = df.reset_index()
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def parse_pairs(items: list[str], what: str) -> dict[str, int]:
    out = {}
    for item in items:
        method, _, value = item.partition("=")
        if method not in METHODS or not value.isdigit():
            raise SystemExit(f"--{what} takes METHOD=N with METHOD one of {', '.join(METHODS)}; got {item!r}")
        out[method] = int(value)
    return out


def parser() -> argparse.ArgumentParser:
    """The script's command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--prompts", nargs="*", help="suite prompt ids (default: all)")
    ap.add_argument("--cases", type=int, default=12, help="benchmark cases per prompt (default 12)")
    ap.add_argument("--method-cases", nargs="*", default=[], help="per-method case counts, e.g. ig=2 shapley=8")
    ap.add_argument("--samples", nargs="*", default=[], help="per-method n_samples, e.g. shapley=4 lime=40")
    ap.add_argument("--variants", nargs="*", help="only these variant names (e.g. clean uppercase_example; default: all)")
    ap.add_argument("--method-prompts", nargs="*", default=[],
                    help="per-method cap on the number of prompts, e.g. ig=2 (the first prompts of the suite)")
    ap.add_argument("--ig-steps", type=int, default=32)
    ap.add_argument("--objective", default="logprob", choices=["logprob", "margin"],
                    help="logprob (default: what the faults' harm was measured on) or margin (choice prompts only)")
    ap.add_argument("--segmentation", default="units", choices=["units", "unit", "sentence", "example"],
                    help="units (default): system sentences and whole examples as marked spans; unit / sentence "
                         "/ example: promptlens's message segmentations of the flat template")
    ap.add_argument("--baseline", default="remove", choices=list(BASELINES),
                    help="what replaces an absent unit (attribute's --baseline); sibling and answer need "
                         "--segmentation unit")
    ap.add_argument("--mode", default="exact", choices=list(MODES),
                    help="exact (default) or one of promptlens.approx's approximate modes, knockout included "
                         "(ablation only)")
    ap.add_argument("--split", default="bench", choices=["bench", "harm"],
                    help="the prompt's cases to attribute on: bench (default; disjoint from the cases the faults "
                         "were selected on) or harm (those 32: to re-test a bench run's calls on other cases)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--tag", default="", help="suffix of the output files, to keep several runs apart")
    ap.add_argument("--summarize", nargs="*", metavar="CSV",
                    help="no runs: tabulate these runs CSVs together (written by earlier runs); where two "
                    "hold the same prompt, variant, method, segmentation and baseline, the later file's row wins")
    ap.add_argument("--quick", action="store_true", help="one prompt, ablation, 3 cases (a smoke test)")
    return ap


def merged_runs(paths: list[str]) -> pd.DataFrame:
    """The runs of these CSVs; a row of a later file replaces an earlier one of the same attribution."""
    df = pd.concat([pd.read_csv(f) for f in paths], ignore_index=True)
    if "baseline" in df.columns:  # runs from before --baseline existed removed the unit
        df["baseline"] = df["baseline"].fillna("remove")
    key = [c for c in ("prompt", "variant", "method", "segmentation", "baseline") if c in df.columns]
    return df.drop_duplicates(key, keep="last").reset_index(drop=True)


def main() -> None:
    args = parser().parse_args()
    out = Path(args.out)
    stem = ("suite_detection" + ("_margin" if args.objective == "margin" else "")
            + (f"_{args.baseline}" if args.baseline != "remove" else "")
            + (f"_{args.segmentation}" if args.segmentation != "units" else "") + (f"_{args.tag}" if args.tag else ""))
    if args.summarize:
        write_tables(merged_runs(args.summarize), out, stem, vars(args))
        return
    args.samples = parse_pairs(args.samples, "samples")
    per_cases, per_prompts = parse_pairs(args.method_cases, "method-cases"), parse_pairs(args.method_prompts, "method-prompts")
    if args.quick:
        args.methods, args.cases, args.prompts = ["ablation"], 3, args.prompts or ["plural_dictionary"]
    torch.set_num_threads(args.threads)
    suite = load_suite()
    prompts = [suite.prompt(p) for p in args.prompts] if args.prompts else list(suite.prompts)
    if args.objective == "margin":
        prompts = [p for p in prompts if p.cases("bench")[0].choices]
    raw = load_backend(raw=True)
    backends = {"raw": raw, "chat": HFBackend(raw.model, raw.tokenizer, name=raw.name, raw=False)}
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for i, prompt in enumerate(prompts):  # prompt by prompt: a run cut short has every method on its prompts
        for method in args.methods:
            if i >= per_prompts.get(method, len(prompts)):
                continue
            cases = prompt.cases(args.split)[: per_cases.get(method, args.cases)]
            if args.objective == "logprob":  # the other labels' scores would be computed and never used
                cases = [replace(c, choices=None) for c in cases]
            for variant in [v for v in prompt.all_variants if not args.variants or v.name in args.variants]:
                row = run_one(backends, variant, cases, method, args)
                rows.append(row)
                pd.DataFrame(rows).to_csv(out / f"{stem}_runs.csv", index=False)  # nothing lost if stopped
                print(f"{method:10s} {variant.id:42s} rank {row.get('rank', '-')}/{row['units']} "
                      f"harmful calls {row['harmful_calls']} {row['seconds']:.0f}s", flush=True)
    write_tables(pd.DataFrame(rows), out, stem, vars(args))


def write_tables(df: pd.DataFrame, out: Path, stem: str, args: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if "hit1" not in df.columns:  # clean twins only: nothing to rank; their calls are in the runs CSV
        print(f"clean twins only: {int(df['harmful_calls'].sum())} harmful calls over {int(df['units'].sum())} units "
              f"(every unit's per-case effects: {out / (stem + '_runs.csv')})")
        return
    summary = summarize(df)
    md = ["## Detection on the suite", "", markdown(summary.round(3)), "",
          "## By fault kind", "", markdown(by_kind(df).round(3)), "",
          "## By variant", "", markdown(by_variant(df)), ""]
    (out / f"{stem}.md").write_text("\n".join(md))
    (out / f"{stem}.json").write_text(json.dumps({"args": args, "summary": summary.reset_index().to_dict("records")},
                                                 indent=1, default=str))
    print("\n".join(md))


if __name__ == "__main__":
    main()
