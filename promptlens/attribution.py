"""Which segments of a prompt push the wanted output down: Captum attribution over segments.

The perturbation methods (FeatureAblation, ShapleyValueSampling, Lime, KernelShap) see the
prompt as a 0/1 presence vector over its feature segments. Our forward function turns each
presence vector into prompt text (absent segments replaced by the baseline), fills it for each
case and scores it with the prefix-sharing scorer; a mask asked for one case is scored for every
case at once, so the template text the cases share is computed once. LayerIntegratedGradients
works on the token embeddings and sums token attributions into segments.

Per-case attributions are pooled into a mean with a confidence interval honest at the number of
cases (``promptlens.stats``: a t-interval); a segment is harmful when the whole interval is below
zero and the call survives the multiplicity correction across the prompt's segments.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from captum.attr import FeatureAblation, KernelShap, LayerIntegratedGradients, Lime, ShapleyValueSampling

from . import approx as approx_mod
from . import stats
from .approx import KNOCKOUT_BASELINE, MODES, ApproxConfig
from .backends.base import (SCORE_ONLY_METHODS, GRADIENT_METHODS, LocalBackend, can_generate, check_method,
                            counts_tokens, local_backend)
from .cases import check_vars
from .errors import InputError
from .knockout import knockout_values, token_owners
from .names import check_choice
from .scoring import Backend, default_objective, kept_prefixes, objective_value, score_prompts, OBJECTIVES
from .segments import SEGMENTATIONS, features, fill, join, overlaps, segment, template_fields
from .templates import (MARK_RE, MARKS, MessageTemplate, as_flat, blank, content_offsets, for_backend, is_messages,
                        messages_of, render_notes, to_flat)
from .types import Approximation, Attribution, Case, Segment, SegmentAttribution

METHODS = SCORE_ONLY_METHODS + GRADIENT_METHODS  # ablation, shapley, lime, kernelshap, ig
from .names import BASELINES  # noqa: E402 (defined where the CLI can import it cheaply)
FILLER = "..."
# Neutral sentences for the "sampled" baseline: said often in prompts, about nothing in particular.
NEUTRAL = (
    "Please read the following carefully. ",
    "Here is some text. ",
    "This is a sentence. ",
    "Take your time. ",
    "The weather is mild today. ",
    "Keep the answer short. ",
)


@dataclass(frozen=True)
class _Problem:
    backend: Backend
    segments: list[Segment]
    feats: list[int]
    cases: list[Case]
    objective: str


class MaskForward:
    """Captum forward function: presence masks [N, F] and case ids [N] -> objective [N].

    A mask seen for the first time is scored for every case in one backend call and memoised,
    so methods that ask case by case (Lime, KernelShap) pay for each mask once.
    """

    def __init__(self, problem: _Problem, replacements: Sequence[str]) -> None:
        self.problem = problem
        self.replacements = list(replacements)
        self.memo: dict[tuple[int, ...], list[float]] = {}

    def prompt(self, key: tuple[int, ...]) -> str:
        p = self.problem
        return join(p.segments, {p.feats[f]: self.replacements[f] for f, on in enumerate(key) if not on})

    def prefetch(self, keys: list[tuple[int, ...]]) -> None:
        """Score these masks for every case in one backend call (one trie: most sharing)."""
        missing = list(dict.fromkeys(k for k in keys if k not in self.memo))
        if missing:
            p = self.problem
            texts = [self.prompt(k) for k in missing]
            filled = [[fill(t, case.vars) for case in p.cases] for t in texts]
            for key, row in zip(missing, score_prompts(p.backend, filled, p.cases)):
                self.memo[key] = [objective_value(s, p.objective) for s in row]

    def __call__(self, mask: torch.Tensor, case_ids: torch.Tensor) -> torch.Tensor:
        keys = [tuple(int(round(v)) for v in row) for row in mask.reshape(mask.shape[0], -1).tolist()]
        self.prefetch(keys)
        values = [self.memo[k][int(c)] for k, c in zip(keys, case_ids.reshape(-1).tolist())]
        return torch.tensor(values, dtype=torch.float64)


def _replacements(problem: _Problem, baseline: str, rng: random.Random,
                  answers: Sequence[ModelAnswer] | None = None) -> list[str]:
    texts = [problem.segments[i].text for i in problem.feats]
    if baseline == "remove":
        return [""] * len(texts)
    if baseline == "sibling":
        return _sibling_replacements(problem, texts)
    if baseline == "answer":
        return _answer_replacements(problem, texts, answers if answers is not None else model_answers(problem))
    # Keep the segment's trailing whitespace so the text around it stays well-formed; a segment
    # of whole messages keeps its role marks (each message's content becomes the filler).
    tails = [t[len(t.rstrip()):] for t in texts]
    if baseline == "filler":
        return [blank(t, FILLER) if is_messages(t) else FILLER + tail for t, tail in zip(texts, tails)]
    return [blank(t, rng.choice(NEUTRAL).strip()) if is_messages(t) else rng.choice(NEUTRAL).rstrip() + tail
            for t, tail in zip(texts, tails)]


def _sibling_replacements(problem: _Problem, texts: list[str]) -> list[str]:
    """The "sibling" baseline: each few-shot example feature is replaced by the example before it
    (the first example by the second), every other feature is removed.

    Why: removing an example measures it against no example, but a wrong example's harm is against
    a right one. Where a faulty example still teaches the task (its format, its length), removing
    it costs more than its fault and it ranks as helpful; replaced by another example of the same
    prompt, the prompt keeps as many examples and differs only in what this one says. A clean
    example replaced by a clean neighbour moves the target little."""
    examples = [f for f, i in enumerate(problem.feats) if problem.segments[i].kind == "example"]
    if len(examples) < 2:  # check_baseline says so before any model work; this guards direct callers
        raise InputError(SIBLING_NEEDS)
    out = [""] * len(texts)
    for j, f in enumerate(examples):
        out[f] = texts[examples[j - 1] if j > 0 else examples[1]]
    return out


SIBLING_NEEDS = ("baseline 'sibling' replaces a few-shot example by another example of the prompt; it needs a "
                 "message template with at least two few-shot examples and --segmentation unit or example "
                 "(or use --baseline remove)")


ANSWER_NEEDS = ("baseline 'answer' replaces each few-shot example's answer by the model's own answer to the "
                "example's question; it needs a message template with at least one few-shot example and "
                "--segmentation unit or example (or use --baseline remove)")


def check_baseline(prompt: str, baseline: str, segmentation: str, method: str = "ablation",
                   edit_fields: bool = False) -> None:
    """The baseline fits the prompt (before any model work): ``sibling`` needs two example
    features, ``answer`` one."""
    check_choice("baseline", baseline, BASELINES)
    if baseline not in ("sibling", "answer"):
        return
    if method == "ig":
        raise InputError("integrated gradients uses its own baseline (a filler token's embedding); "
                         f"use --baseline {baseline} with ablation, shapley, lime or kernelshap")
    segs = segment(prompt, segmentation, edit_fields=edit_fields) if segmentation != "token" else []
    n_examples = sum(s.feature and s.kind == "example" for s in segs)
    if baseline == "sibling" and n_examples < 2:
        raise InputError(SIBLING_NEEDS)
    if baseline == "answer" and n_examples < 1:
        raise InputError(ANSWER_NEEDS)


# --- the "answer" baseline: each example's answer replaced by the model's own -------------------

# Generated answers live on the backend object (``_ANSWER_CACHE`` attribute): {(generation prompt,
# max_new_tokens): (answer, prompt tokens, new tokens, seconds)}. Greedy decoding is deterministic,
# so a prompt is generated once per backend and process. (On the backend, not in a dict keyed by
# it: a dataclass backend such as HFBackend is unhashable.)
_ANSWER_CACHE = "_promptlens_answer_cache"


@dataclass(frozen=True)
class ModelAnswer:
    """One few-shot example under the ``answer`` baseline: its question, the prompt's answer, the
    model's own greedy answer to the question (given the rest of the prompt, without this
    example), and what generating it cost (``cached``: it was generated earlier in this process
    and cost nothing now; the figures are then those of that first generation)."""

    feature: int  # position among the attribution's features
    name: str
    question: str
    prompt_answer: str
    model_answer: str
    generation_prompt: str  # the filled flat text the model answered
    prompt_tokens: int
    new_tokens: int
    seconds: float
    cached: bool

    @property
    def same(self) -> bool:
        return _escape(self.model_answer).strip() == self.prompt_answer.strip()


def _escape(text: str) -> str:
    """Generated text as template text: braces literal, no role marks."""
    return MARK_RE.sub("", text).replace("{", "{{").replace("}", "}}")


def _answer_prompt(segments: Sequence[Segment], seg_index: int, cases: Sequence[Case]) -> tuple[str, str, str]:
    """(filled generation prompt, question, answer) for the example at ``segments[seg_index]``:
    the prompt without this example, its messages up to (not including) the last user turn (the
    template the cases fill), then the example's question as the user turn. Fields elsewhere in
    the prompt (a system field) are filled from the first case."""
    example = messages_of(segments[seg_index].text)
    if [m.role for m in example] != ["user", "assistant"]:
        raise InputError(ANSWER_NEEDS)
    rest = messages_of(join(segments, {seg_index: ""}))
    last_user = max(i for i, m in enumerate(rest) if m.role == "user")
    context = to_flat([*rest[:last_user], example[0]])
    return fill(context, cases[0].vars if cases else {}), example[0].content, example[1].content


def _max_new_tokens(backend: Backend, answer: str) -> int:
    """Room for the model's answer: twice the prompt's answer and 16 tokens more (at most 256)."""
    n = len(backend.encode_target(answer)) if counts_tokens(backend) and answer.strip() else len(answer) // 2
    return min(256, 2 * n + 16)


def model_answers(problem: _Problem) -> list[ModelAnswer]:
    """The model's own greedy answer to each few-shot example's question (see ``ModelAnswer``),
    generated once per prompt text, backend and process."""
    backend = problem.backend
    if not can_generate(backend):
        raise InputError(f"baseline 'answer' needs a backend that writes text, and "
                         f"{getattr(backend, 'name', type(backend).__name__)} cannot; use --baseline sibling or remove")
    cache: dict[tuple[str, int], tuple[str, int, int, float]] = getattr(backend, _ANSWER_CACHE, None) or {}
    try:
        setattr(backend, _ANSWER_CACHE, cache)
    except AttributeError:  # a backend that takes no new attributes (slots): no cache across calls
        pass
    out: list[ModelAnswer] = []
    for f, i in enumerate(problem.feats):
        seg = problem.segments[i]
        if seg.kind != "example":
            continue
        text, question, answer = _answer_prompt(problem.segments, i, problem.cases)
        key = (text, _max_new_tokens(backend, answer))
        cached = key in cache
        if not cached:
            start = time.perf_counter()
            said = backend.generate(for_backend(backend, text), max_new_tokens=key[1])
            seconds = time.perf_counter() - start
            prompt_tokens = len(backend.encode_prompt(text)) if counts_tokens(backend) else 0
            new_tokens = len(backend.encode_target(said)) + 1 if counts_tokens(backend) and said else 1  # + end token
            cache[key] = (said, prompt_tokens, new_tokens, seconds)
        said, prompt_tokens, new_tokens, seconds = cache[key]
        out.append(ModelAnswer(f, seg.name or f"example {len(out) + 1}", question, answer, said, text,
                               prompt_tokens, new_tokens, seconds, cached))
    if not out:
        raise InputError(ANSWER_NEEDS)
    return out


def _answer_replacements(problem: _Problem, texts: list[str], answers: Sequence[ModelAnswer]) -> list[str]:
    """The "answer" baseline: each few-shot example keeps its question and gets the model's own
    greedy answer to it (``model_answers``); every other feature is removed.

    Why: a wrong or wrong-format answer is harm only against a better answer, which deleting the
    example (no answer) or replacing it by a neighbour (another question's answer) does not show.
    The model's own answer is the answer this prompt would get without the example's influence:
    where the prompt's answer is wrong and the model would say the right one, the example is
    measured against the right answer; where the model would say the same, the effect is zero."""
    out = [""] * len(texts)
    for a in answers:
        seg = problem.segments[problem.feats[a.feature]]
        tail = seg.text[len(seg.text.rstrip()):]
        out[a.feature] = MARKS["user"] + a.question + MARKS["assistant"] + _escape(a.model_answer.strip()) + tail
    return out


def _answer_cost(answers: Sequence[ModelAnswer]) -> tuple[int, int, list[str]]:
    """Forward passes and tokens of the generations made now (a greedy step is one forward pass),
    and a note on what the baseline did."""
    new = [a for a in answers if not a.cached]
    passes = sum(a.new_tokens for a in new)
    tokens = sum(a.prompt_tokens + a.new_tokens - 1 for a in new)
    differ = [a for a in answers if not a.same]
    note = (f"baseline 'answer': each example's answer replaced by the model's own greedy answer to its question "
            f"({len(differ)} of {len(answers)} differ from the prompt's; {len(new)} generated now, "
            f"{sum(a.seconds for a in new):.1f} s)")
    said = "; ".join(f"{a.name}: {_short(a.prompt_answer)} -> {_short(a.model_answer)}" for a in differ)
    return passes, tokens, [note] + ([f"the model's answers that differ: {said}"] if differ else [])


def _short(text: str, width: int = 40) -> str:
    """A quoted one-line excerpt of an answer for a note."""
    line = " ".join(text.split())
    return repr(line if len(line) <= width else line[: width - 3] + "...")


def _perturbation(method: str, problem: _Problem, forward: MaskForward, n_samples: int,
                  per_eval: int, seed: int) -> torch.Tensor:
    n_cases, n_feats = len(problem.cases), len(problem.feats)
    ones = torch.ones(n_cases, n_feats, dtype=torch.float64)
    case_ids = torch.arange(n_cases)
    if method == "ablation":
        return FeatureAblation(forward).attribute(
            ones, baselines=0.0, additional_forward_args=(case_ids,), perturbations_per_eval=per_eval)
    if method == "shapley":
        torch.manual_seed(seed)
        return ShapleyValueSampling(forward).attribute(
            ones, baselines=0.0, additional_forward_args=(case_ids,), n_samples=n_samples,
            perturbations_per_eval=per_eval)
    # Lime and KernelShap fit one surrogate per case. The same seed before each case draws the
    # same masks, so after the first case every mask is already memoised for all cases.
    algo = (Lime if method == "lime" else KernelShap)(forward)
    rows = []
    for c in range(n_cases):
        torch.manual_seed(seed)
        rows.append(algo.attribute(
            ones[c : c + 1], baselines=0.0, additional_forward_args=(case_ids[c : c + 1],),
            n_samples=n_samples, perturbations_per_eval=per_eval))
    return torch.cat(rows)


def _check_statistics(confidence: float, correction: str, interval: str) -> None:
    check_choice("interval", interval, stats.METHODS)
    stats.check_correction(correction)
    stats.check_confidence(confidence)


def _case_count_notes(n: int) -> list[str]:
    """Below ``stats.MIN_CASES`` why there are no verdicts; just above it, a call for more cases."""
    if n < stats.MIN_CASES:
        return [stats.too_few_reason(n)]
    note = stats.few_cases_note(n)
    return [note] if note else []


def _default_backend() -> Backend:
    from .backends.hf import load_backend

    return load_backend()


def _answers_cost_and_notes(answers: Sequence[ModelAnswer] | None, notes: list[str]) -> tuple[tuple[int, int], list[str]]:
    """What the answer baseline's generations cost (they bypass the scorer's counters), and the notes with theirs."""
    if answers is None:
        return (0, 0), notes
    gen_passes, gen_tokens, gen_notes = _answer_cost(answers)
    return (gen_passes, gen_tokens), notes + gen_notes


def attribute(
    prompt: str | MessageTemplate | Sequence[dict],
    target: str | None = None,
    *,
    cases: Sequence[Case] | None = None,
    backend: Backend | None = None,
    method: str = "ablation",
    segmentation: str = "unit",
    baseline: str = "remove",
    objective: str | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    edit_fields: bool = False,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    correction: str = stats.DEFAULT_CORRECTION,
    interval: str = stats.DEFAULT_METHOD,
    perturbations_per_eval: int = 64,
    ig_steps: int = 32,
    mode: str = "exact",
    approx: ApproxConfig | None = None, skip: Sequence[tuple[int, int]] = (),
) -> Attribution:
    """Rank the segments of ``prompt`` (a prompt, or a template with ``{fields}`` filled from
    ``cases``) by their effect on the objective: mean over cases, with a ``confidence`` interval
    (``interval``: "skew-t", the default; "t", "hall", "percentile", "bca") and harmful/helpful verdicts corrected for
    the number of segments (``correction``: "bh", "holm" or "none"; see ``promptlens.stats``).
    Below ``stats.MIN_CASES`` cases the effects come without verdicts.

    Give either ``target`` (one case, no fields) or ``cases``. ``target=None`` with no cases
    explains the model's own greedy output. ``prompt`` may be a message template (a
    ``MessageTemplate``, e.g. from ``load_template``, or a list of ``{role, content}`` dicts):
    ``Attribution.text`` and the segments are then its flat text (``promptlens.templates``).
    ``mode`` other than "exact" estimates leave-one-out ablation more cheaply (see
    :mod:`promptlens.approx`, settings in ``approx``) and checks its most harmful segments
    against exact leave-one-out: ``result.approximation``.
    ``skip``: (start, end) ranges of the flat prompt whose segments stay and get no row (bench: the examples).
    """
    prompt = as_flat(prompt)
    approx = approx or ApproxConfig()
    _check_settings(method, mode, approx, baseline, segmentation)
    _check_statistics(confidence, correction, interval)
    check_inputs(prompt, target, cases)
    check_baseline(prompt, baseline, segmentation, method, edit_fields)
    backend = backend if backend is not None else _default_backend()
    check_method(method, backend)  # before any scoring: a remote backend has no gradients
    problem = _problem(prompt, target, cases, backend, objective, segmentation, edit_fields, skip)
    cases, objective, segments, feats = problem.cases, problem.objective, problem.segments, problem.feats
    start = time.perf_counter()
    passes0, tokens0 = getattr(backend, "forward_passes", 0), getattr(backend, "tokens_computed", 0)
    delta, answers = None, model_answers(problem) if baseline == "answer" else None
    ig_cost, notes = _answers_cost_and_notes(answers, list(render_notes(backend, prompt)))
    forward = MaskForward(problem, _replacements(problem, baseline, random.Random(seed), answers))
    n_feats = len(feats)
    everything = (1,) * n_feats  # every segment present
    if method == "ablation" and mode == "exact":  # every mask is known up front: score them all in one trie
        forward.prefetch([everything] + [everything[:f] + (0,) + everything[f + 1 :] for f in range(n_feats)])
    estimated, approximation = np.zeros(n_feats, dtype=bool), None
    with kept_prefixes(backend):  # later calls (an approximate mode's variants, sampled masks) reuse earlier starts
        original = forward(torch.ones(len(cases), len(feats)), torch.arange(len(cases))).numpy()
        if mode != "exact":
            per_case, estimated, approximation = _approximate(mode, problem, forward, segmentation, approx,
                                                               confidence, seed)
        elif method == "ig":
            per_case, delta, ig_cost = _ig_with_notes(problem, ig_steps, notes)  # ig takes no answer baseline
        else:
            n_samples = n_samples or {"shapley": 8, "lime": 2 * n_feats + 32, "kernelshap": 2 * n_feats + 32}.get(method, 1)
            per_case = _perturbation(method, problem, forward, n_samples, perturbations_per_eval, seed).numpy()
    notes += _case_count_notes(len(cases))
    feats_out = _pooled(per_case, segments, feats, confidence=confidence, interval=interval, correction=correction,
                        seed=seed, estimated=estimated)
    passes, tokens = _cost(backend, passes0, tokens0, ig_cost)
    if approximation is not None:
        approximation = dataclasses.replace(approximation, forward_passes=passes, tokens_computed=tokens)
        notes.append(approximation.summary())
    return Attribution(
        method=method, baseline=baseline, objective=objective, segmentation=segmentation,
        text=join(segments), segments=tuple(segments), features=feats_out,
        original_score=float(original.mean()), n_cases=len(cases), forward_passes=passes, tokens_computed=tokens,
        seconds=time.perf_counter() - start, convergence_delta=delta, notes=tuple(notes), mode=mode,
        approximation=approximation, confidence=confidence, interval=interval, correction=correction,
    )


def merge_cases(parts: Sequence[Attribution], seed: int = 0) -> Attribution:
    """One attribution of the same template over the cases of ``parts`` together, in their order:
    what exact leave-one-out over all those cases gives (each case's effects are its own), with the
    intervals and verdicts recomputed over every case. Cost (passes, tokens, seconds) is the sum
    of the parts'. For ``fix --join``, where two workers attribute halves of the cases."""
    first = parts[0]
    if any(p.method != "ablation" or p.mode != "exact" for p in parts):
        raise ValueError("only exact ablation attributions are merged over cases")
    if any((p.text, p.segmentation, p.baseline, p.objective) != (first.text, first.segmentation, first.baseline,
                                                                  first.objective) for p in parts):
        raise ValueError("the parts attribute different templates or settings")
    per_case = np.concatenate([np.array([f.per_case for f in p.features]).T for p in parts], axis=0)
    n = per_case.shape[0]
    feats = [f.index for f in first.features]
    features = _pooled(per_case, first.segments, feats, confidence=first.confidence, interval=first.interval,
                       correction=first.correction, seed=seed)
    own = {note for p in parts for note in _case_count_notes(p.n_cases)}
    notes = list(dict.fromkeys(note for p in parts for note in p.notes if note not in own)) + _case_count_notes(n)
    return dataclasses.replace(
        first, features=features, n_cases=n, original_score=sum(p.original_score * p.n_cases for p in parts) / n,
        forward_passes=sum(p.forward_passes for p in parts), tokens_computed=sum(p.tokens_computed for p in parts),
        seconds=sum(p.seconds for p in parts), notes=tuple(notes))


def _cost(backend: Backend, passes0: int, tokens0: int, extra: tuple[int, int]) -> tuple[int, int]:
    """Forward passes and tokens since (passes0, tokens0). IG's model calls and the answer
    baseline's generations bypass the scorer's counters, so they are added (``extra``): IG's one
    batched forward and backward over the steps per case; a generation's greedy steps."""
    return (getattr(backend, "forward_passes", 0) - passes0 + extra[0],
            getattr(backend, "tokens_computed", 0) - tokens0 + extra[1])


def _pooled(per_case: np.ndarray, segments: Sequence[Segment], feats: Sequence[int], *, confidence: float,
            interval: str, correction: str, seed: int, estimated: np.ndarray | None = None,
            ) -> tuple[SegmentAttribution, ...]:
    """Per-case effects [cases, features] -> one SegmentAttribution per feature: mean, interval,
    the segment's own verdict and the verdict after correcting across the prompt's segments.
    Features an approximate mode ``estimated`` get no verdict and are left out of the correction's
    family (only measured segments are tested)."""
    n = per_case.shape[0]
    estimated = np.zeros(per_case.shape[1], dtype=bool) if estimated is None else np.asarray(estimated, dtype=bool)
    iv = stats.intervals(per_case, confidence=confidence, method=interval, seed=seed)
    adjusted = np.ones(per_case.shape[1])
    adjusted[~estimated] = stats.adjust(iv.p_value[~estimated], correction)
    out = []
    for f, i in enumerate(feats):
        mean, p, q = float(iv.mean[f]), float(iv.p_value[f]), float(adjusted[f])
        raw, said = ("estimate", "estimate") if estimated[f] else (
            stats.verdict(mean, p, n, confidence), stats.verdict(mean, q, n, confidence))
        out.append(SegmentAttribution(
            segments[i], i, mean, float(iv.low[f]), float(iv.high[f]), tuple(float(v) for v in per_case[:, f]),
            estimated=bool(estimated[f]), n_cases=n, confidence=confidence, interval=interval, p_value=p,
            p_adjusted=q, correction=correction, raw_verdict=raw, verdict=said))
    return tuple(out)


def _refine_interval(values: np.ndarray, *, confidence: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The interval an approximate mode refines on: stats' interval, or the mean itself with one
    case (then it refines on the size of an effect alone)."""
    iv = stats.intervals(values, confidence=confidence, seed=seed)
    if iv.n < 2:
        return iv.mean, iv.mean
    return iv.low, iv.high


def _problem(prompt: str, target: str | None, cases: Sequence[Case] | None, backend: Backend,
             objective: str | None, segmentation: str, edit_fields: bool,
             skip: Sequence[tuple[int, int]] = ()) -> _Problem:
    """The cases (from ``target`` when none are given), the objective and the segments to attribute
    (none that overlaps a ``skip`` range)."""
    cases = _resolve_cases(prompt, target, cases, backend)
    objective = objective or default_objective(cases)
    check_choice("objective", objective, OBJECTIVES)
    if objective == "margin" and not all(c.choices for c in cases):
        raise InputError("the margin objective needs choices on every case; use --objective logprob")
    segments = segment(prompt, segmentation, tokenizer=getattr(backend, "tokenizer", None), edit_fields=edit_fields)
    feats = [i for i in features(segments) if not overlaps(segments[i], skip)]
    if not feats:
        by = "sentence" if segmentation == "unit" and not is_messages(prompt) else segmentation
        raise InputError(f"the prompt has no {by} segments to attribute; try another --segmentation")
    return _Problem(backend, segments, feats, list(cases), objective)


def _check_settings(method: str, mode: str, approx: ApproxConfig, baseline: str, segmentation: str) -> None:
    """The choices ``attribute`` takes, checked before any model work."""
    check_choice("method", method, METHODS)
    check_choice("mode", mode, MODES)
    if mode != "exact":
        approx.check()
        if method != "ablation":
            raise InputError(f"--mode {mode} approximates leave-one-out ablation; use --method ablation (the default)")
    check_choice("baseline", baseline, BASELINES)
    if mode == "knockout" and baseline != "remove":
        raise InputError(KNOCKOUT_BASELINE)
    check_choice("segmentation", segmentation, SEGMENTATIONS)


def _ig_with_notes(problem: _Problem, steps: int, notes: list[str]) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Integrated gradients, noting its baseline and a convergence delta too large to rank on;
    with its cost (forward passes, tokens) for the result."""
    per_case, delta, tokens = _integrated_gradients(problem, steps=steps)
    notes.append("integrated gradients: baseline is a filler token's embedding at feature tokens")
    rel = delta / max(1e-9, float(np.abs(per_case).sum(1).mean()))
    if rel > 0.05:
        notes.append(f"convergence delta {delta:.3g} nats ({rel:.0%} of the attributions' size): "
                     "do not rank on this without more --ig-steps")
    return per_case, delta, (len(problem.cases), tokens)


def _approximate(mode: str, problem: _Problem, forward: MaskForward, segmentation: str, config: ApproxConfig,
                 confidence: float, seed: int) -> tuple[np.ndarray, np.ndarray, Approximation]:
    """An approximate mode's per-case effects [cases, features], which are estimates, and its
    record (costs are filled in by the caller, who counts the whole run)."""
    scorer = approx_mod.Scorer(forward, len(problem.feats))

    def make_scorer(cheap: Backend) -> approx_mod.Scorer:  # the same masks and texts, another model
        return approx_mod.Scorer(MaskForward(dataclasses.replace(problem, backend=cheap), forward.replacements),
                                 len(problem.feats))

    est = approx_mod.estimate(
        mode, scorer, segments=problem.segments, feats=problem.feats, segmentation=segmentation, config=config,
        interval=lambda v: _refine_interval(v, confidence=confidence, seed=seed), seed=seed,
        backend=problem.backend, make_scorer=make_scorer,
        sample=fill(forward.prompt(scorer.full), problem.cases[0].vars),
        knockout_values=lambda: knockout_values(problem.backend, problem.segments, problem.feats, problem.cases,
                                                problem.objective, config.window))
    verified, approx_means, exact_means = approx_mod.verify(scorer, est, config.verify_k)
    est.settings["verify_k"] = config.verify_k
    record = approx_mod.approximation(mode, est, verified, approx_means, exact_means, (scorer.variants, 0, 0))
    return est.per_case, est.estimated, record


def check_inputs(prompt: str, target: str | None, cases: Sequence[Case] | None) -> None:
    """The mistakes that need no model to find (an empty prompt or target, a field without a value),
    so the command line can report them before it spends seconds loading one."""
    if not prompt.strip():
        raise InputError("the prompt is empty; give the prompt text or a file that contains it")
    fields = template_fields(prompt)
    if cases:
        if target is not None:
            raise InputError("give either a target or cases, not both")
        check_vars(cases, fields, source="the cases")
    elif fields:
        raise InputError(f"the template has fields {', '.join('{' + f + '}' for f in fields)}; give cases that fill them")
    elif target is not None and not target.strip():
        raise InputError("the target is empty; give the output you want the prompt to produce")


def _resolve_cases(prompt: str, target: str | None, cases: Sequence[Case] | None, backend: Backend) -> list[Case]:
    check_inputs(prompt, target, cases)
    if cases:
        return list(cases)
    if target is None:
        if not can_generate(backend):
            raise InputError(f"backend {getattr(backend, 'name', type(backend).__name__)} cannot write the model's "
                             "own output to explain; give --target")
        target = backend.generate(for_backend(backend, fill(prompt, {})))
    if not target.strip():
        raise InputError("the model's own output is empty, so there is nothing to explain; give --target")
    return [Case(vars={}, target=target)]


def _integrated_gradients(problem: _Problem, *, steps: int) -> tuple[np.ndarray, float, int]:
    """LayerIntegratedGradients on the input embeddings, summed per segment, per case; and the
    tokens it ran through the model (steps x sequence length per case, forward and backward)."""
    backend = local_backend(problem.backend, "ig")
    if problem.objective != "logprob":
        raise InputError("integrated gradients explains the target log-prob; add --objective logprob")
    model, tokenizer = backend.model, backend.tokenizer
    filler = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows, deltas, tokens = [], [], 0
    for case in problem.cases:
        prompt_ids, owner = token_owners(backend, problem.segments, case)
        target_ids = backend.encode_target(case.target)
        ids = torch.tensor([prompt_ids + target_ids], device=model.device)
        base = ids.clone()
        feature_pos = [p for p, seg in enumerate(owner) if seg is not None and seg in problem.feats]
        base[0, feature_pos] = filler
        n_prompt = len(prompt_ids)
        tokens += steps * ids.shape[1]
        targets = torch.tensor(target_ids, device=model.device)

        def forward(input_ids: torch.Tensor) -> torch.Tensor:
            logits = model(input_ids=input_ids).logits[:, n_prompt - 1 : -1].float()
            return torch.log_softmax(logits, -1).gather(2, targets.expand(len(input_ids), -1)[..., None])[..., 0].sum(1)

        lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
        attr, delta = lig.attribute(ids, baselines=base, n_steps=steps, internal_batch_size=steps,
                                    return_convergence_delta=True)
        token_attr = attr[0].sum(-1).detach().double().cpu()
        seg_attr = np.zeros(len(problem.feats))
        for f, i in enumerate(problem.feats):
            pos = [p for p, seg in enumerate(owner) if seg == i]
            seg_attr[f] = float(token_attr[pos].sum()) if pos else 0.0
        rows.append(seg_attr)
        deltas.append(abs(float(delta)))
    return np.stack(rows), float(np.mean(deltas)), tokens


