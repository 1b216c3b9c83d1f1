"""Long-prompt attribution: stock Captum, exact promptlens and each approximate mode, one process.

Workload (``long_workload``, fixed before the modes were compared; what was drawn is written to
benchmarks/results/long_workload.json): the benchmark suite's ``plural_dictionary/uppercase_example``
(few-shot example 6 of 8 answers "READERS"; measured -2.11 nats [-2.56, -1.65] over the suite's 32
harm cases) grown to 70 sentence segments and 1,062 prompt tokens: 23 more rule lines in the
system message and 10 more worked examples (the prompt's harm-split records, seeded) before its
own eight, so the planted example stays second to last. Cases: the first 8 of the bench split.
Which segments are harmful is what exact leave-one-out measures here, not assumed.

Stock = Captum ``LLMAttribution(FeatureAblation)`` with ``forward_in_tokens=False``: one full
forward per segment and case, case by case. It is timed on ``--stock-cases`` cases and scaled
linearly to all cases (its cost per case is the same for every case); the output says so.
Agreement with exact leave-one-out: top-1 and top-3 overlap of the most harmful segments, mAP of
exact's harmful set (interval below zero) in the mode's ranking (``map``), mAP of exact's as many
most harmful segments by mean (``map_top``: the set exact's own ranking puts first, so exact scores
1 on it; added 2026-12-02 because exact's own ``map`` was 0.833 on this workload), Spearman over all
segments. Every mode's per-segment means are written to the JSON (``means``).
The floor is exact mode's: the FLOPs of every distinct token prefix of its variants (each
computed once, as its prefix trie does) at the fp32 matmul peak measured around the run.

    python benchmarks/long_prompt.py [--threads 1] [--cases 8] [--stock-cases 1] [--modes hierarchical,proxy:bfloat16]
                                     [--json out.json] [--quick]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch

from attribution_speed import flops_per_token, matmul_peak
from breakdown import breakdown
from profile_stages import print_stages, profile_detail
from promptlens.approx import APPROXIMATE, ApproxConfig, agreement
from promptlens.attribution import attribute
from promptlens.backends.hf import load_backend
from promptlens.prefix import _Node, _insert
from promptlens.segments import features, fill, join, segment
from promptlens.templates import from_messages
from promptlens.types import Case

LONG_RULES = [
    "Most nouns form their plural by adding the letter s to the end of the singular form, as in book and books.",
    "This regular pattern covers the great majority of everyday English nouns, old and new.",
    "Loan words that have settled into English usually follow this regular pattern as well.",
    "Nouns that end in s, x, z, ch or sh add es instead, as in box and boxes or church and churches.",
    "The extra vowel is there because the plural would be hard to pronounce without it.",
    "A few short words ending in z double the final consonant first, as in quiz and quizzes.",
    "A noun that ends in a consonant followed by y changes the y to i and adds es, as in city and cities.",
    "A noun that ends in a vowel followed by y simply adds s, as in day and days or key and keys.",
    "Proper names that end in y usually keep the y and add s, as in the two Kennedys.",
    "Some nouns that end in f or fe change the ending to ves, as in leaf and leaves or knife and knives.",
    "Others keep the f and simply add s, as in roof and roofs or chief and chiefs.",
    "A few nouns, such as scarf and hoof, accept both plural forms in modern usage.",
    "A small set of very old nouns have irregular plurals, as in child and children or mouse and mice.",
    "Some nouns change their inner vowel, as in man and men, foot and feet, or tooth and teeth.",
    "Nouns borrowed from Greek or Latin may keep their original plural, as in crisis and crises.",
    "Compound nouns usually pluralise their main word, as in mother-in-law and mothers-in-law.",
    "Some nouns are the same in the singular and the plural, as in sheep, deer and aircraft.",
    "Uncountable nouns such as information, furniture and advice are returned unchanged.",
    "If the noun is misspelled, give the plural of the word the reader most likely meant, spelled correctly.",
    "Never add an article, a number or any other word to the plural form you return.",
    ("Nouns that are always plural, such as scissors, trousers and glasses, are also returned unchanged, because "
     "their singular and plural forms are written the same way."),
    ("Abbreviations and numbers usually add a lower-case s without an apostrophe, as in two PhDs or the 1990s, "
     "and letters used as words may take an apostrophe for clarity."),
    ("If a noun has two accepted plurals with different meanings, such as brothers and brethren, choose the "
     "everyday meaning that a general dictionary lists first."),
]
SUITE_PROMPT, SUITE_VARIANT = "plural_dictionary", "uppercase_example"  # measured harm -2.11 nats [-2.56, -1.65]
EXTRA_EXAMPLES = 10  # drawn from the prompt's harm split (seeded), never from the bench cases scored here
WORKLOAD_SEED = 0
MANIFEST = Path(__file__).resolve().parent / "results" / "long_workload.json"


def long_workload(n_cases: int = 8, seed: int = WORKLOAD_SEED, rules: int | None = None,
                  examples: int | None = None) -> tuple[str, list[Case], dict]:
    """The long workload: the suite's ``plural_dictionary/uppercase_example`` (few-shot example 6
    of 8 answers READERS; its harm was measured at -2.11 nats over 32 cases) with
    ``LONG_RULES`` added as system lines after the first two and ``EXTRA_EXAMPLES`` more
    worked examples (shuffled from the prompt's harm split with ``seed``) before its own eight,
    so the planted example stays second to last. Cases: the first ``n_cases`` of the bench split.
    ``rules`` / ``examples``: only so many added rules / extra examples (the smoke test).
    Returns the flat message template, the cases and a manifest of what was drawn."""
    import random

    from benchmarks.suite import load_suite

    prompt = load_suite().prompt(SUITE_PROMPT)
    variant = next(v for v in prompt.variants if v.name == SUITE_VARIANT)
    messages = [dict(m) for m in variant.messages]
    lines = messages[0]["content"].split("\n")
    messages[0]["content"] = "\n".join(lines[:2] + [f"- {r}" for r in LONG_RULES[:rules]] + lines[2:])
    harm = prompt.cases("harm")
    picked = random.Random(f"long:{seed}").sample(range(len(harm)), EXTRA_EXAMPLES)[:examples]
    extra = []
    for i in picked:
        extra += [{"role": "user", "content": f"Noun: {harm[i].vars['input']}"},
                  {"role": "assistant", "content": harm[i].target}]
    messages = messages[:1] + extra + messages[1:]
    cases = prompt.cases("bench")[:n_cases]
    manifest = {"suite_prompt": SUITE_PROMPT, "variant": SUITE_VARIANT, "seed": seed,
                "fault": {"unit": variant.fault.unit, "text": variant.fault.text,
                          "harm_logprob": [variant.harm.logprob.mean, variant.harm.logprob.low,
                                           variant.harm.logprob.high]},
                "added_rules": len(LONG_RULES[:rules]), "extra_examples": [harm[i].id for i in picked],
                "cases": [c.id for c in cases], "messages": messages}
    return from_messages(messages).text, cases, manifest


def stock_captum_messages(backend, text: str, cases: list[Case]) -> np.ndarray:
    """Stock Captum on the rendered chat text: each feature's text is a value of a
    TextTemplateInput, located in the rendered prompt in order; everything between is fixed."""
    from captum.attr import FeatureAblation, LLMAttribution, TextTemplateInput

    llm = LLMAttribution(FeatureAblation(backend.model), backend.tokenizer)
    segs = segment(text, "sentence")
    feats = set(features(segs))
    esc = lambda s: s.replace("{", "{{").replace("}", "}}")
    rows = []
    for case in cases:
        rendered = backend.render(fill(text, case.vars))
        pieces, values, cursor = [], [], 0
        for i, seg in enumerate(segs):
            if i not in feats:
                continue
            value = fill(seg.text, {})
            at = rendered.find(value, cursor)
            if at < 0:  # the chat template strips a message's trailing whitespace
                value = value.rstrip()
                at = rendered.find(value, cursor)
            pieces += [esc(rendered[cursor:at]), "{}"]
            values.append(value)
            cursor = at + len(value)
        pieces.append(esc(rendered[cursor:]))
        inp = TextTemplateInput("".join(pieces), values=values, baselines=[""] * len(values))
        with torch.no_grad():
            res = llm.attribute(inp, target=case.target, forward_in_tokens=False)
        rows.append(res.seq_attr.detach().numpy())
    return np.stack(rows)


def trie_floor_flops(backend, text: str, cases: list[Case]) -> float:
    """FLOPs of exact leave-one-out with every distinct token prefix computed once (the trie)."""
    segs = segment(text, "sentence")
    feats = features(segs)
    root, requests = _Node([], 0, None), 0
    for case in cases:
        tgt = backend.encode_target(case.target)
        for replace in [{}] + [{i: ""} for i in feats]:
            _insert(root, backend.encode_prompt(fill(join(segs, replace), case.vars)) + tgt)
            requests += len(tgt)
    total, stack = 0.0, list(root.children.values())
    while stack:
        node = stack.pop()
        stack.extend(node.children.values())
        total += sum(flops_per_token(backend.model, node.start + j + 1, lm_head=False) for j in range(len(node.tokens)))
    return total + requests * 2 * backend.model.get_input_embeddings().weight.numel()


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--stock-cases", type=int, default=1, help="cases stock Captum is timed on (scaled linearly; "
                    "0: skip it, for a smoke test)")
    ap.add_argument("--verify-k", type=int, default=5)
    ap.add_argument("--budget", type=int, default=32)
    ap.add_argument("--modes", default=",".join(APPROXIMATE), help="comma-separated; proxy:KIND runs the proxy "
                    "mode with that copy (bf16-blocks, bfloat16, int8) instead of auto's choice")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--quick", action="store_true", help="smoke test: 4 added rules, 2 extra examples, 2 cases")
    ap.add_argument("--profile", action="store_true", help="also run exact once more under torch.profiler and print "
                    "where its time goes (with --modes '' --stock-cases 0: the profile alone)")
    ap.add_argument("--breakdown", action="store_true", help="also run exact once more with its modules timed, "
                    "without the profiler, and its linear calls at the stock kernel's rate (benchmarks/breakdown.py)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    backend = load_backend()
    if args.quick:
        text, cases, manifest = long_workload(2, rules=4, examples=2)
    else:
        text, cases, manifest = long_workload(args.cases)
        MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")  # the record of what was drawn
    n_tokens = len(backend.encode_prompt(fill(text, cases[0].vars)))
    print(f"workload: {len(features(segment(text, 'sentence')))} segments, {n_tokens} prompt tokens, "
          f"{len(cases)} cases; threads={args.threads}; load average {os.getloadavg()[0]:.1f} at start", flush=True)
    rows = []
    # Stock runs last: the slowest part, and the one least likely to fail.
    peak0 = matmul_peak(args.threads)
    t_exact, exact = _timed(lambda: attribute(text, cases=cases, backend=backend, objective="logprob"))
    peak = max(peak0, matmul_peak(args.threads))
    floor = trie_floor_flops(backend, text, cases) / (peak * 1e9)
    ex_means = np.array([f.mean for f in exact.features])
    ex_per_case = np.array([f.per_case for f in exact.features]).T
    harmful = [j for j, f in enumerate(exact.features) if f.harmful]
    rows.append({"mode": "exact", "seconds": round(t_exact, 1), "vs_exact": 1.0, "vs_floor": round(t_exact / floor, 2),
                 "floor_s": round(floor, 1), "peak_gflops": round(peak, 1), "variants": len(ex_means) + 1,
                 "forward_passes": exact.forward_passes, "tokens": exact.tokens_computed,
                 "means": [round(float(m), 5) for m in ex_means], **agreement(ex_means, ex_means, harmful)})
    print(f"exact: {t_exact:.1f} s, floor {floor:.1f} s; harmful by exact: "
          f"{[exact.features[j].segment.text.strip()[:40] for j in harmful]}", flush=True)
    for f in sorted(exact.features, key=lambda f: f.mean)[:5]:
        print(f"  exact {f.mean:+.3f} [{f.ci_low:+.3f}, {f.ci_high:+.3f}] {f.verdict}: {f.segment.text.strip()[:60]!r}")
    if args.profile:
        detail = profile_detail(lambda: attribute(text, cases=cases, backend=backend, objective="logprob"), peak)
        rows[0]["profile"] = detail
        print_stages(detail["stages"], f"exact, {args.threads} threads, load average {os.getloadavg()[0]:.1f}", detail)
    if args.breakdown:
        rows[0]["breakdown"] = breakdown(
            backend.model, lambda: attribute(text, cases=cases, backend=backend, objective="logprob"),
            f"exact, {args.threads} threads, load average {os.getloadavg()[0]:.1f}", floor, repeats=1)
    for label in [m for m in args.modes.split(",") if m]:
        mode, _, kind = label.partition(":")  # proxy:bfloat16 -> that copy instead of auto's choice
        cfg = ApproxConfig(verify_k=args.verify_k, budget=args.budget, proxy=kind or "auto")
        t, res = _timed(lambda: attribute(text, cases=cases, backend=backend, objective="logprob", mode=mode, approx=cfg))
        means = np.array([f.mean for f in res.features])
        a = res.approximation
        rows.append({"mode": label, "seconds": round(t, 1), "vs_exact": round(t_exact / t, 2), "variants": a.variants,
                     "forward_passes": a.forward_passes, "tokens": a.tokens_computed, "exact_features": a.exact_features,
                     "check_max_abs_diff": round(a.max_abs_diff, 3), "settings": a.settings,
                     "max_abs_diff_all": round(float(np.abs(means - ex_means).max()), 3),
                     "means": [round(float(m), 5) for m in means], **(agree := agreement(means, ex_means, harmful))})
        print(f"{label}: {t:.1f} s; {agree}; {a.summary()}", flush=True)
    t_stock, stock = _timed(lambda: stock_captum_messages(backend, text, cases[: args.stock_cases])
                            if args.stock_cases else np.zeros((0, 0)))
    args.stock_cases = args.stock_cases or 1  # skipped: the ratios against stock are meaningless then
    t_stock_all = t_stock * len(cases) / args.stock_cases
    print(f"stock Captum: {t_stock:.1f} s on {args.stock_cases} case(s), scaled x{len(cases) / args.stock_cases:g} "
          f"-> {t_stock_all:.1f} s", flush=True)
    for r in rows:
        r["speedup_vs_stock"] = round(t_stock_all / r["seconds"], 1)
    rows[0]["max_abs_diff_vs_stock"] = float(np.abs(ex_per_case[: len(stock)] - stock).max()) if len(stock) else None
    print(f"\nstock Captum timed on {args.stock_cases} of {len(cases)} cases and scaled linearly; "
          f"one run each; load average {os.getloadavg()[0]:.1f} at the end")
    cols = ["mode", "seconds", "speedup_vs_stock", "vs_exact", "variants", "forward_passes", "tokens", "top1", "top3",
            "map", "map_top", "spearman", "max_abs_diff_all"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.3f}" if isinstance(r.get(c), float) and c not in ("seconds",) else str(r.get(c))
                         for c in cols))
    print(f"exact: {rows[0]['vs_floor']}x its floor ({rows[0]['floor_s']} s at {rows[0]['peak_gflops']} GFLOP/s), "
          f"max |diff| vs stock {rows[0]['max_abs_diff_vs_stock']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "stock_s": round(t_stock, 1),
                                               "stock_cases": args.stock_cases, "cases": len(cases),
                                               "prompt_tokens": n_tokens,
                                               "segments": [f.segment.text for f in exact.features],
                                               "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
