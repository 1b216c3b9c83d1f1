"""``bench``: how much a prompt's results move under small, meaning-preserving perturbations.

    prompt ──► attribute (word ablation) ──► sites ranked by importance
      │                                            │
      │          random placement ◄── perturb ──► guided placement   (each level, equal budget)
      ▼                                            │
    clean + formatting variants + perturbed prompts ──► score (one call per batch) ──► rows

Metrics, per prompt, level and placement (means over cases, then over perturbed prompts):

* accuracy (cases with choices) and PDR = 1 - acc(perturbed) / acc(clean), as in PromptBench;
* the mean margin (target minus best wrong choice) and its drop in nats, for cases with choices;
* mean target log-prob, the drop in nats (clean - perturbed; positive = worse), and
  PDR(p) = 1 - exp(logp(perturbed) - logp(clean)): the PDR of the geometric-mean probability of
  the target. A log-prob is negative, so a ratio of log-probs would read backwards; the
  probability ratio keeps PDR's meaning (0: no change, 0.5: half as likely, < 0: more likely);
* the worst perturbed prompt found, and its PDR;
* format spread: max - min accuracy (else mean log-prob, nats) over formatting variants.

The headline metric M is accuracy when every case has choices, else the geometric-mean target
probability. Random and attribution-guided placement score the same number of perturbed prompts
per level, so their drops compare at equal budget.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, NoReturn, Sequence

import numpy as np

from .templates import as_flat
from .attribution import attribute
from .cases import check_vars
from .errors import InputError
from .perturb import (LEVELS, PLACEMENTS, Perturbation, Site, example_ranges, format_variants, perturb,
                      protected_words, sentence_sites, word_sites)
from . import stats
from .scoring import Backend, default_objective, summarize_many
from .segments import template_fields
from .similarity import Similarity, SimilarityModel
from .types import Case

if TYPE_CHECKING:
    import pandas as pd
    from tqdm import tqdm


@dataclass(frozen=True)
class Variant:
    """One scored template: the clean prompt, a formatting variant or a perturbation."""

    level: str  # one of LEVELS, "clean" or "format"
    placement: str  # "random", "guided", or "" for clean and format variants
    text: str
    edits: tuple[str, ...]  # what changed (format variants: their name)
    similarity: float | None
    accuracy: float | None  # over cases; None when a case has no choices
    logprob: float  # mean target log-prob over cases, nats
    margin: float | None  # mean margin (target minus best wrong choice), nats; None without choices
    per_case: tuple[float, ...] = ()  # the objective per case: the margin with choices, else the log-prob


@dataclass(frozen=True)
class Row:
    """One line of the PDR table: a prompt, a level (or "overall") and a placement."""

    prompt: str
    level: str
    placement: str
    n: int  # perturbed prompts scored
    clean_accuracy: float | None
    perturbed_accuracy: float | None
    pdr_accuracy: float | None  # 1 - acc(perturbed) / acc(clean); None without choices or acc 0
    clean_logprob: float
    perturbed_logprob: float | None
    logprob_drop: float | None  # clean - perturbed, nats (positive: the target got less likely)
    pdr_probability: float | None  # 1 - exp(-logprob_drop)
    clean_margin: float | None
    perturbed_margin: float | None
    margin_drop: float | None  # clean - perturbed, nats (choice cases)
    worst_pdr: float | None  # the headline PDR of the single worst perturbed prompt
    worst_edits: tuple[str, ...] = ()
    # Interval of ``drop`` over the cases (per case: clean minus the mean over the perturbed prompts).
    drop_low: float | None = None
    drop_high: float | None = None
    n_cases: int = 0
    confidence: float = stats.DEFAULT_CONFIDENCE
    interval: str = stats.DEFAULT_METHOD

    @property
    def pdr(self) -> float | None:
        """The headline PDR: on accuracy when there are choices, else on probability."""
        return self.pdr_accuracy if self.clean_accuracy is not None else self.pdr_probability

    @property
    def drop(self) -> float | None:
        """The drop of the objective, nats: the margin with choices (what attribution explains;
        a label's log-prob alone can move with every label), else the target log-prob."""
        return self.margin_drop if self.clean_margin is not None else self.logprob_drop


@dataclass(frozen=True)
class PromptBench:
    """Everything measured for one prompt."""

    name: str
    template: str
    clean: Variant
    formats: tuple[Variant, ...]  # the clean prompt first
    format_spread: float  # max - min accuracy (else mean log-prob, nats) over formats
    important: tuple[tuple[str, float], ...]  # the words attribution ranks highest, with effect (nats)
    perturbations: tuple[Variant, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Comparison:
    """Guided minus random placement for one prompt and level, at equal budget."""

    prompt: str
    level: str
    n: int
    pdr_gain: float | None  # guided PDR - random PDR
    drop_gain: float | None  # guided drop - random drop of the objective (margin, else logprob), nats
    worst_gain: float | None  # guided worst-case PDR - random worst-case PDR
    # Interval over the cases of the per-case drop_gain, and what it says ("larger", "smaller",
    # "unclear" or "too few cases"; promptlens.stats).
    drop_gain_low: float | None = None
    drop_gain_high: float | None = None
    verdict: str = "unclear"
    n_cases: int = 0
    confidence: float = stats.DEFAULT_CONFIDENCE
    interval: str = stats.DEFAULT_METHOD


@dataclass(frozen=True)
class BenchResult:
    prompts: tuple[PromptBench, ...]
    levels: tuple[str, ...]
    budget: int
    edits: int
    threshold: float
    seed: int
    n_cases: int
    metric: str  # "accuracy" or "probability": what the headline PDR is computed on
    forward_passes: int
    seconds: float
    stage_seconds: Mapping[str, float]  # "attribution", "perturbation" (paraphrasing included), "scoring"
    notes: tuple[str, ...] = ()
    confidence: float = stats.DEFAULT_CONFIDENCE  # of the drop intervals and the guided-vs-random verdicts
    interval: str = stats.DEFAULT_METHOD

    @property
    def rows(self) -> list[Row]:
        return [r for p in self.prompts for r in p.rows]

    def to_dataframe(self) -> pd.DataFrame:
        """The PDR table as a pandas DataFrame: one row per prompt, level (and ``overall``) and
        placement, every ``Row`` field plus the headline ``pdr`` and ``drop``."""
        import dataclasses

        import pandas as pd

        frame = pd.DataFrame([{**dataclasses.asdict(r), "pdr": r.pdr, "drop": r.drop} for r in self.rows])
        frame["worst_edits"] = frame["worst_edits"].map(list)
        return frame

    def _repr_html_(self) -> str:
        """Jupyter: the HTML bench report (the same page as ``bench --html``)."""
        from .html import bench_html, notebook_html

        return notebook_html(bench_html(self))

    def comparisons(self) -> list[Comparison]:
        """Guided vs random for every prompt and level (and "overall")."""
        out = []
        for p in self.prompts:
            by = {(r.level, r.placement): r for r in p.rows}
            for level in (*self.levels, "overall"):
                rnd, gui = by.get((level, "random")), by.get((level, "guided"))
                if rnd is None or gui is None or not rnd.n:
                    continue
                groups = [[v for v in p.perturbations if v.placement == pl and level in ("overall", v.level)]
                          for pl in ("guided", "random")]
                low, high, verdict = _paired(*groups, confidence=self.confidence)
                out.append(Comparison(p.name, level, rnd.n, _minus(gui.pdr, rnd.pdr),
                                      _minus(gui.drop, rnd.drop), _minus(gui.worst_pdr, rnd.worst_pdr),
                                      low, high, verdict, self.n_cases, self.confidence, self.interval))
        return out


@dataclass(frozen=True)
class BenchConfig:
    """Every knob of ``bench``, with its default. Example: ``BenchConfig(levels=("character",), budget=2)``."""

    levels: tuple[str, ...] = LEVELS  # perturbation levels to run
    budget: int = 4  # perturbed prompts per level and placement
    edits: int = 2  # words changed per character- or word-level perturbation
    threshold: float = 0.8  # minimum similarity of a perturbed prompt to its original
    seed: int = 0
    batch: int = 8  # templates per backend call
    progress: bool = False  # a progress bar on stderr


def bench(
    prompts: Mapping[str, str] | Sequence[str],
    cases: Sequence[Case],
    config: BenchConfig | None = None,
    *,
    backend: Backend | None = None,
    similarity: SimilarityModel | None = None,
    **overrides: Any,
) -> BenchResult:
    """Benchmark the robustness of each prompt (name -> template, or a list of templates) on ``cases``.

    Example: ``bench({"original": "Plural of {input}:"}, load_cases("cases.jsonl"), BenchConfig(budget=2))``

    Per prompt and level, ``budget`` perturbed prompts are placed at random and ``budget`` are
    guided by attribution (first the words, or the sentence, whose ablation lowers the objective
    most, then the next ones); character and word levels change ``edits`` words per prompt. A
    perturbation is kept only if it keeps the fields and label words and its similarity to the
    prompt is at least ``threshold``. The same ``seed`` gives the same result. ``overrides`` are
    ``BenchConfig`` fields applied over ``config``.
    """
    start = time.monotonic()
    c = replace(config or BenchConfig(), **overrides)
    named = dict(prompts) if isinstance(prompts, Mapping) else {f"prompt {i + 1}": p for i, p in enumerate(prompts)}
    named = {name: as_flat(p) for name, p in named.items()}  # a message template: its flat text
    check_bench_args(named, cases, c.levels, c.budget, c.edits, c.threshold)
    if backend is None:
        from .backends.hf import load_backend

        backend = load_backend()
    passes0 = getattr(backend, "forward_passes", 0)
    bar = _progress(len(named) * (1 + 2 * len(c.levels)), c.progress)
    run = _BenchRun(c, cases, backend, similarity or Similarity(), bar)
    results = [run.prompt(name, template) for name, template in named.items()]
    bar.close()
    return BenchResult(
        prompts=tuple(results), levels=tuple(c.levels), budget=c.budget, edits=c.edits, threshold=c.threshold,
        seed=c.seed, n_cases=len(cases), metric="accuracy" if results[0].clean.accuracy is not None else "probability",
        forward_passes=getattr(backend, "forward_passes", 0) - passes0, seconds=time.monotonic() - start,
        stage_seconds=run.stages, notes=tuple(run.notes),
    )


class _BenchRun:
    """What the prompts of one ``bench`` call share: the cases, the model, the timings and notes."""

    def __init__(self, config: BenchConfig, cases: Sequence[Case], backend: Backend, similarity: SimilarityModel,
                 bar: tqdm[NoReturn]) -> None:
        self.c, self.cases, self.backend, self.similarity, self.bar = config, cases, backend, similarity, bar
        self.protected = protected_words(cases)
        self.paraphrase = _paraphraser(backend)
        self.notes: list[str] = []
        self.stages = dict.fromkeys(("attribution", "perturbation", "scoring"), 0.0)

    def prompt(self, name: str, template: str) -> PromptBench:
        c = self.c
        words, sentences = word_sites(template, self.protected), sentence_sites(template)
        # Attribution ranks the words: what the guided placement aims at. The few-shot examples
        # hold no site, so their words are not attributed (on the suite's prompts, 15-52% of the words).
        clock = time.monotonic()
        effect: dict[int, tuple[int, float]] = {}
        if words or sentences:
            attr = attribute(template, cases=self.cases, backend=self.backend, method="ablation",
                             segmentation="word", seed=c.seed, skip=example_ranges(template))
            effect = {f.segment.start: (f.segment.end, f.mean) for f in attr.features}
        self.stages["attribution"] += time.monotonic() - clock
        clock = time.monotonic()
        self.bar.update(1)
        words = [replace(s, importance=_word_effect(s, effect)) for s in words]
        sentences = [replace(s, importance=_span_effect(s, effect)) for s in sentences]
        planned = [p for level in c.levels for p in self._perturb(name, template, level, words, sentences)]
        formats = format_variants(template, self.protected)
        texts = [t for _, t in formats] + [p.text for p in planned]
        self.stages["perturbation"] += time.monotonic() - clock
        clock = time.monotonic()
        scores = _score(self.backend, texts, self.cases, c.batch, self.bar)
        self.stages["scoring"] += time.monotonic() - clock
        clean, *format_scores = [Variant("format", "", t, (fname,), None, *s)
                                 for (fname, t), s in zip(formats, scores)]
        clean = replace(clean, level="clean")
        perturbed = tuple(Variant(p.level, p.placement, p.text, p.edits, p.similarity, *s)
                          for p, s in zip(planned, scores[len(formats):]))
        return PromptBench(
            name=name, template=template, clean=clean, formats=(clean, *format_scores),
            format_spread=_spread([clean, *format_scores]),
            important=tuple((s.text, s.importance) for s in sorted(words, key=lambda s: -s.importance)[:5]),
            perturbations=perturbed, rows=tuple(_rows(name, clean, perturbed, c.levels)),
        )

    def _perturb(self, name: str, template: str, level: str, words: list[Site], sentences: list[Site]) -> list[Perturbation]:
        """``budget`` random and ``budget`` guided perturbations at ``level`` (fewer, equal on both sides,
        when fewer pass the meaning filter)."""
        c = self.c
        sites = words if level in ("character", "word") else sentences
        if not sites:
            self.notes.append(f"{name}, {level}: nothing to perturb (no {'word' if sites is words else 'sentence'} "
                              "outside the fields, the label words and the few-shot examples)")
            self.bar.update(2)
            return []
        found = {placement: perturb(
            template, level, sites=sites, placement=placement,
            budget=c.budget, rng=random.Random(f"{c.seed}:{level}:{placement}"), similarity=self.similarity,
            threshold=c.threshold, protected=self.protected, edits=c.edits, paraphrase=self.paraphrase,
        ) for placement in PLACEMENTS}
        self.bar.update(2)
        n = min(len(v) for v in found.values())  # equal budget: the shorter side sets it
        if n < c.budget:
            self.notes.append(f"{name}, {level}: {n} of {c.budget} perturbed prompts per placement passed "
                              f"the meaning filter (threshold {c.threshold})")
        return found["random"][:n] + found["guided"][:n]


def check_bench_args(named: Mapping[str, str], cases: Sequence[Case], levels: Sequence[str], budget: int,
                     edits: int, threshold: float) -> None:
    """The mistakes that need no model to find, so the command line reports them before loading one."""
    if not named:
        raise InputError("no prompt to benchmark; give a recipe, --template or --prompt")
    if not cases:
        raise InputError("no cases to score the prompts on; give --cases or a recipe with cases")
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
        raise InputError(f"unknown level {bad[0] if bad else ''!r}; choose from: {', '.join(LEVELS)}")
    if budget < 1:
        raise InputError(f"budget {budget} is out of range; give 1 or more perturbed prompts per level")
    if edits < 1:
        raise InputError(f"edits {edits} is out of range; give 1 or more words changed per prompt")
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"threshold {threshold} is out of range; give a similarity in (0, 1], e.g. 0.8")
    for name, template in named.items():
        if not template.strip():
            raise InputError(f"prompt {name!r} is empty; give the prompt text or a file that holds it")
        check_vars(cases, template_fields(template), source=f"the cases for prompt {name!r}")


def _word_effect(site: Site, effect: Mapping[int, tuple[int, float]]) -> float:
    """The attribution of the word segment the site lies in."""
    for start, (end, mean) in effect.items():
        if start <= site.start < end:
            return mean
    return 0.0


def _span_effect(site: Site, effect: Mapping[int, tuple[int, float]]) -> float:
    """Summed attribution of the words that start inside a sentence site."""
    return sum(mean for start, (_, mean) in effect.items() if site.start <= start < site.end)


def _paraphraser(backend: Backend) -> Callable[[str, int, int], list[str]]:
    """The backend's own model paraphrases; sampled once per sentence, so random and guided
    placement draw from the same paraphrases and differ only in where they put them."""
    from .rewrites import paraphrases

    memo: dict[str, list[str]] = {}

    def paraphrase(body: str, n: int, seed: int) -> list[str]:
        if body not in memo:
            memo[body] = paraphrases(backend, body, n=n, seed=seed)
        return list(memo[body])

    return paraphrase


def _score(backend: Backend, texts: Sequence[str], cases: Sequence[Case], batch: int,
           bar: tqdm[NoReturn]) -> list[tuple[float | None, float, float | None, tuple[float, ...]]]:
    """(accuracy, mean log-prob, mean margin, the objective per case) of each template over the cases,
    ``batch`` templates per call."""
    bar.total = (bar.total or 0) + -(-len(texts) // batch)  # the bar has a total from _progress
    out = []
    for i in range(0, len(texts), batch):
        # per case: the objective (the margin with choices, else the log-prob), for the drop intervals
        out += [(s.accuracy, s.logprob, s.margin, s.per_case)
                for s in summarize_many(backend, texts[i : i + batch], cases, default_objective(cases))]
        bar.update(1)
    return out


def _spread(variants: Sequence[Variant]) -> float:
    values = [v.accuracy if v.accuracy is not None else v.logprob for v in variants]
    return max(values) - min(values)


def _rows(name: str, clean: Variant, perturbed: Sequence[Variant], levels: Sequence[str]) -> list[Row]:
    rows = []
    for level in (*levels, "overall"):
        for placement in PLACEMENTS:
            group = [v for v in perturbed if v.placement == placement and (level == "overall" or v.level == level)]
            rows.append(_row(name, level, placement, clean, group))
    return rows


def _row(name: str, level: str, placement: str, clean: Variant, group: Sequence[Variant]) -> Row:
    if not group:
        return Row(name, level, placement, 0, clean.accuracy, None, None, clean.logprob, None, None, None,
                   clean.margin, None, None, None)
    has_acc = clean.accuracy is not None  # then every variant has an accuracy and a margin: same cases
    acc = _mean([v.accuracy for v in group]) if has_acc else None
    logprob = sum(v.logprob for v in group) / len(group)
    margin = _mean([v.margin for v in group]) if has_acc else None
    # Worst: lowest accuracy, ties broken by margin; without choices, lowest log-prob.
    worst = min(group, key=lambda v: (v.accuracy, v.margin) if has_acc else (0.0, v.logprob))
    worst_pdr = (_pdr(clean.accuracy, worst.accuracy) if has_acc
                 else 1.0 - math.exp(worst.logprob - clean.logprob))
    low = high = None
    if clean.per_case and all(v.per_case for v in group):
        iv = stats.intervals(np.asarray(clean.per_case) - _case_means(group))
        low, high = float(iv.low[0]), float(iv.high[0])
    return Row(name, level, placement, len(group), clean.accuracy, acc, _pdr(clean.accuracy, acc) if has_acc else None,
               clean.logprob, logprob, clean.logprob - logprob, 1.0 - math.exp(logprob - clean.logprob),
               clean.margin, margin, _minus(clean.margin, margin), worst_pdr, worst.edits,
               low, high, len(clean.per_case))


def _mean(values: Sequence[float | None]) -> float:
    known = [v for v in values if v is not None]
    if len(known) != len(values):
        raise ValueError("a variant scored without choices among variants scored with them")
    return sum(known) / len(known)


def _case_means(group: Sequence[Variant]) -> np.ndarray:
    """The objective per case, averaged over a group of perturbed prompts [cases]."""
    return np.mean([v.per_case for v in group], axis=0)


def _paired(guided: Sequence[Variant], random_: Sequence[Variant], *,
            confidence: float) -> tuple[float | None, float | None, str]:
    """Interval over the cases of (guided drop - random drop) = random objective - guided objective
    per case, and its verdict: "larger" (guided finds larger drops), "smaller", "unclear" or too few cases."""
    if not guided or not random_ or not all(v.per_case for v in (*guided, *random_)):
        return None, None, "unclear"
    diff = _case_means(random_) - _case_means(guided)
    iv = stats.intervals(diff, confidence=confidence)
    said = stats.verdict(float(iv.mean[0]), float(iv.p_value[0]), iv.n, confidence)
    said = {"harmful": "smaller", "helpful": "larger"}.get(said, said)
    return float(iv.low[0]), float(iv.high[0]), said


def _pdr(clean: float | None, perturbed: float | None) -> float | None:
    if clean is None or perturbed is None or clean <= 0.0:
        return None
    return 1.0 - perturbed / clean


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _progress(total: int, enabled: bool) -> tqdm[NoReturn]:
    from tqdm import tqdm

    return tqdm(total=total, desc="bench", unit="step", disable=not enabled, leave=False)
