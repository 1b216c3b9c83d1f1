"""``fix``: attribution-guided, meaning-preserving repair of a prompt template.

    score original ──► attribute (train) ──► weakest segments ──► candidate rewrites
          ▲                                                              │
          └──────────── re-attribute the best ◄── Optuna study over edits ◄┘

The best template is chosen on the train cases only; the validation cases are scored before and
after, never searched on, so the reported gain there is an honest estimate. The original template
is trial 0 of every round, and a round's edits are kept only if their gain over the round's start
is significant on train (a one-sided skew-adjusted t lower bound over the cases above 0,
``promptlens.stats``; never with fewer than ``stats.MIN_CASES`` train cases), else the start is kept.
With the margin objective and ``keep_logprob`` the gain that must be significant is the right
label's log-prob (the margin may then move on train by a non-significant amount).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, NoReturn, Sequence

import optuna

from . import handoff
from .attribution import attribute, merge_cases
from .cases import check_vars, split_cases
from .errors import InputError
from .rewrites import RewriteConfig, candidates
from .scoring import Backend, default_objective, score_prompts, summarize_scores
from .fewshot import (EXAMPLE_KINDS, answer_segments, check_examples, check_notes, example_part_segments,
                      merge_examples)
from .segments import fill, segment, template_fields
from .templates import MessageTemplate, as_flat, render_notes
from .similarity import Similarity, SimilarityModel
from .storage import (fail_running_trials, finished, join_study, open_study, storage_for, store_result,
                      stored_result, wait_for)
from .study import (BudgetSpent, Slot, StudyOutcome, TemplateScorer, best_template, enqueue_original,
                    enqueue_single_edits, flip, kept_prefixes, ranked_choices, run_study, store_slots, stored_slots,
                    template_for)
from .stats import DEFAULT_CONFIDENCE, MIN_CASES, lower_bound, significant
from .types import Attribution, Case, Score, Segment, Summary

if TYPE_CHECKING:
    import pandas as pd
    from tqdm import tqdm

from .names import STRATEGIES  # noqa: E402,F401 (defined where the CLI can import it cheaply)
# Defined where the recipe reader (and so a cached `promptlens lint RECIPE`) can import them cheaply.
from .fix_settings import FixConfig, train_validation  # noqa: E402,F401


@dataclass(frozen=True)
class Flips:
    """The cases whose verdict the fix changed (``study.flip``), each named by its id or its
    split and position, with its first field's value: ``lost`` were right with the original
    template and are wrong with the fixed one, ``gained`` the reverse. ``rule``: "correct" (the
    right label scores best) on choice cases; on free-form targets "greedy" (every target token has
    probability above 1/2, so greedy decoding gives the target; see ``study.right``)."""

    lost: tuple[str, ...]
    gained: tuple[str, ...]
    rule: str


@dataclass(frozen=True)
class Edit:
    """One kept change: segment ``segment_index`` of the round's starting template."""

    round: int
    segment_index: int
    old: str
    new: str
    kind: str
    similarity: float  # whole template with this edit vs the original template
    segment_similarity: float | None
    gain: float  # train objective lost if this edit alone is undone (leave-one-out), nats
    logprob_gain: float | None = None  # the same for the target log-prob (margin objective only)
    gain_low: float = float("-inf")  # one-sided lower confidence bound of ``gain`` (stats.lower_bound)
    n_cases: int = 0  # train cases the gain is a mean over
    confidence: float = DEFAULT_CONFIDENCE
    interval: str = "skew-t"  # one-sided skew-adjusted t lower bound (stats.lower_bound)


handoff.register(Edit)  # a round's leader hands its kept edits to the other workers


@dataclass(frozen=True)
class Verdict:
    """What a fix run's numbers mean, decided once (``fix_verdict``); every report renders it.

    ``kind``: ``no_edit`` (the original is kept), ``validation_fell`` (the objective fell on the
    validation cases: a warning), ``logprob_rule`` (the margin fell on validation while the right
    label's log-prob rose, as the log-prob rule allows: a note), ``validation_held`` (an honest
    estimate on cases the search never saw), ``train_only`` (no validation cases)."""

    kind: str
    level: str  # "warning", "note" or "info"
    message: str  # one sentence, no trailing full stop

    @property
    def warn(self) -> bool:
        return self.level == "warning"


@dataclass(frozen=True)
class FixResult:
    original: str
    best: str
    objective: str
    strategy: str
    threshold: float
    similarity: float  # best template vs original
    train_before: Summary
    train_after: Summary
    validation_before: Summary | None
    validation_after: Summary | None
    edits: tuple[Edit, ...]
    attribution_before: Attribution
    attribution_after: Attribution
    trials: int  # run in this call
    trials_total: int  # in the studies, resumed runs included
    pruned: int
    infeasible: int
    forward_passes: int
    seconds: float
    seed: int
    study_name: str
    storage: str | None
    notes: tuple[str, ...] = ()
    logprob_rule: bool = False  # margin objective: edits had to raise the right label's log-prob significantly
    train_flips: Flips | None = None
    validation_flips: Flips | None = None
    max_regressions: int | None = None  # the search's limit on train cases turned from right to wrong
    validation_logprob_low: float | None = None  # stats.lower_bound of the per-case validation log-prob gain
    prompts_scored: int = 0  # before the validation scores (what FixConfig.prompts limits; never above it)
    validation_prompts: int = 0  # the validation cases scored with the original and the fixed template
    scores_taken: int = 0  # under ``join``: train scores read from the study, scored by other workers
    verdict: Verdict = field(init=False)  # from the fields above (``fix_verdict``); kept in the JSON

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", fix_verdict(self))

    @property
    def improved(self) -> bool:
        return self.best != self.original

    @property
    def cost(self) -> str:
        """The cost line every report prints (``cost_line``); not in the JSON, whose fields hold
        the same numbers (and a timing would make two identical runs' JSON differ)."""
        return cost_line(self)

    def case_scores(self) -> list[CaseScore]:
        """Each case's objective under the original and the fixed template, from the summaries
        (no model call)."""
        out = []
        for split, before, after in (("train", self.train_before, self.train_after),
                                     ("validation", self.validation_before, self.validation_after)):
            if before is not None and after is not None:
                out += [CaseScore(split, i, b, a) for i, b, a in zip(before.case_ids, before.per_case, after.per_case)]
        return out
    def studies(self) -> list[optuna.Study]:
        """The Optuna studies of this repair, one per round (``NAME:round0``, ...), loaded from
        ``storage``; empty when the storage holds none. Raises what the storage raises."""
        import optuna

        if not self.storage:
            return []
        prefix = f"{self.study_name}:round"
        names = optuna.study.get_all_study_names(storage=self.storage)
        rounds = sorted((int(n[len(prefix):]), n) for n in names if n.startswith(prefix) and n[len(prefix):].isdigit())
        return [optuna.load_study(study_name=n, storage=self.storage) for _, n in rounds]

    def to_dataframe(self) -> pd.DataFrame:
        """Every trial of every round as a pandas DataFrame (Optuna's ``trials_dataframe``, with a
        ``round`` column first): number, value, state, the chosen rewrite per segment slot
        (``params_s<i>``), durations and user attributes."""
        import pandas as pd

        if not self.storage:
            raise InputError("the study was kept in memory, so its trials are gone; run fix with an output folder "
                             "(out=...) or a storage URL to keep them")
        frames = [s.trials_dataframe().assign(round=r) for r, s in enumerate(self.studies())]
        if not frames:
            raise InputError(f"no study named {self.study_name} in {self.storage}; was it removed?")
        frame = pd.concat(frames, ignore_index=True)
        return frame[["round", *[c for c in frame.columns if c != "round"]]]

    def _repr_html_(self) -> str:
        """Jupyter: the HTML fix report (charts from the stored study, when there is one)."""
        from .html import fix_html, notebook_html

        return notebook_html(fix_html(self))

    @property
    def headline(self) -> str:
        """The result in one plain sentence: which harmful segment attribution found, what the fix
        did to it, and how the wanted output's probability moved on the validation cases (train
        when there are none); the terminal and HTML reports both lead with it."""
        return headline(self)


def _pct(p: float) -> str:
    return f"{p:.2%}" if p < 0.01 else f"{p:.1%}"


def _quoted(segment: Segment) -> str:
    from .templates import shown

    text = " ".join(shown(segment.text).split())
    return "\u2018" + (text if len(text) <= 60 else text[:59] + "\u2026") + "\u2019"


def _found(result: FixResult) -> str:
    """What attribution found and what the fix did with it (the first half of the headline)."""
    ranked = result.attribution_before.ranked()
    worst = ranked[0] if ranked else None
    first = [e for e in result.edits if e.round == 0]
    if worst is not None and worst.harmful:
        found = f"attribution found the harmful segment {_quoted(worst.segment)} ({worst.mean:+.2f} nats)"
        touched = [e for e in first if e.segment_index == worst.index]
        if touched:
            return found + " and the fix " + ("removed it" if not touched[0].new.strip() else "rewrote it")
    else:
        attr = result.attribution_before
        found = (f"attribution found no segment that is harmful ({attr.interval_text()}, corrected for "
                 f"{len(attr.features)} segments: {attr.correction_text()})" if attr.has_verdicts else
                 f"attribution could not call any segment harmful: {attr.n_cases} train case(s), fewer than a "
                 "verdict needs")
        if result.edits:
            found += f"; the fix edited {len(result.edits)} segment(s)"
    if not result.edits:
        return found
    rank = {f.index: n for n, f in enumerate(ranked, 1)}
    edited = [(rank.get(e.segment_index), e) for e in first] or [(None, result.edits[0])]
    n, e = min(edited, key=lambda x: x[0] or len(ranked) + 1)
    what = "removed" if not e.new.strip() else "rewrote"
    where = f" (attribution's #{n} of {len(ranked)}, {ranked[n - 1].mean:+.2f} nats)" if n else ""
    others = f" and {len(result.edits) - 1} other segment(s)" if len(result.edits) > 1 else ""
    return f"{found}; the fix {what} {_quoted(Segment(0, 0, e.old, 'edit'))}{where}{others}"


def _likelihood(p0: float, p1: float) -> str:
    """How the wanted output's probability moved, as percentages, or as a factor when both are tiny."""
    if max(p0, p1) < 1e-3 and p0 > 0 and p1 > 0:
        factor = p1 / p0
        return (f"became {factor:.3g} times as likely" if factor >= 1 else f"became {1 / factor:.3g} times less likely")
    return f"went from {_pct(p0)} to {_pct(p1)}"


def headline(result: FixResult) -> str:
    """See ``FixResult.headline``."""
    found = _found(result)
    found = found[0].upper() + found[1:]
    if not result.edits:
        return found + "; no edit beat the original on train, so the prompt is kept as it is."
    before, after, where = ((result.validation_before, result.validation_after, "validation")
                            if result.validation_before and result.validation_after
                            else (result.train_before, result.train_after, "train"))
    p0, p1 = math.exp(before.logprob), math.exp(after.logprob)
    low = result.validation_logprob_low if where == "validation" else None
    how = ("significantly: " if low is not None and low > 0 else
           "not significantly: " if low is not None and p1 > p0 else "")
    sentence = (f"{found}; on {before.n_cases} {where} cases the wanted output {_likelihood(p0, p1)} "
                f"({how}mean log-prob {before.logprob:.2f} \u2192 {after.logprob:.2f} nats")
    flips = result.validation_flips if where == "validation" else result.train_flips
    if flips is not None:
        sentence += f"; {len(flips.lost)} case(s) turned wrong, {len(flips.gained)} right"
    return sentence + ")."



@dataclass(frozen=True)
class CaseScore:
    """One case's objective (nats) under the original and the fixed template."""

    split: str  # "train" or "validation"
    id: str
    before: float
    after: float


def fix_verdict(result: FixResult) -> Verdict:
    """The verdict on the validation cases (train when there are none); see ``Verdict``."""
    v0, v1 = result.validation_before, result.validation_after
    if not result.edits:
        return Verdict("no_edit", "info", f"no edit beat the original prompt on the "
                       f"{result.train_before.n_cases} train cases, so the prompt is kept as it is")
    if not (v0 and v1):
        return Verdict("train_only", "info", "these numbers come from the train cases the search optimised on, so "
                       "they may be optimistic; give validation cases for an honest estimate")
    fell = v1.objective - v0.objective
    if fell < -1e-9 and result.logprob_rule and v1.logprob > v0.logprob:
        return Verdict("logprob_rule", "note", f"the right label's log-prob rose on validation "
                       f"({v1.logprob - v0.logprob:+.3f} nats) and the margin fell ({fell:+.3f}): the edits were "
                       "chosen for a significant log-prob gain on train with the margin allowed to move by a "
                       "non-significant amount; check the accuracy")
    if fell < -1e-9:
        return Verdict("validation_fell", "warning", f"the {result.objective} fell on validation ({fell:+.3f} "
                       "nats): the edits fit the train cases only; give more train cases or keep the original")
    return Verdict("validation_held", "info", f"the {v0.n_cases} validation cases were never used by the search, "
                   f"so this is an honest estimate; the fixed prompt is {result.similarity:.0%} similar in meaning "
                   "to the original")


def cost_line(result: FixResult) -> str:
    """What the run cost, and where its study is (one line, no trailing full stop)."""
    where = f" in {result.storage}" if result.storage else ""
    taken = f", {result.scores_taken} train scores taken from other workers" if result.scores_taken else ""
    return (f"{result.trials} trials ({result.trials_total} in the study, {result.pruned} pruned, "
            f"{result.infeasible} infeasible: under the similarity threshold {result.threshold} or the log-prob "
            f"rule), {result.forward_passes} forward passes{taken}, {result.seconds:.1f} s; strategy {result.strategy}, "
            f"seed {result.seed}, study {result.study_name}{where}")


def flips(before: Sequence[Score], after: Sequence[Score], cases: Sequence[Case], split: str) -> Flips:
    """Which cases turned from right to wrong (``lost``) and back (``gained``); see ``Flips``."""
    def name(i: int, case: Case) -> str:
        first = next(iter(case.vars.values()), "")
        first = " ".join(str(first).split())
        return (case.id or f"{split} {i + 1}") + (f": {first[:40]}{'…' if len(first) > 40 else ''}" if first else "")

    moved = [(flip(b, a), name(i, c)) for i, (b, a, c) in enumerate(zip(before, after, cases))]
    rule = "correct" if all(b.correct is not None for b in before) else "greedy"
    return Flips(lost=tuple(n for f, n in moved if f < 0), gained=tuple(n for f, n in moved if f > 0), rule=rule)


def default_study_name(template: str, cases: Sequence[Case], strategy: str, seed: int) -> str:
    """Stable across runs of the same problem, so ``resume`` finds the study without a name."""
    key = repr((template, [(dict(c.vars), c.target, c.choices) for c in cases], strategy, seed))
    return "fix-" + hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:10]  # a name, not a secret


def _choose(attr: Attribution, strategy: str, top_k: int, rng: random.Random) -> list[int]:
    """Segment indices to edit: the weakest by attribution, a random few, or every feature (``all``,
    and ``tpe``, which differs from ``all`` in the search: no single edits queued first). A part of
    a few-shot example (its answer, a label, or its question) is never edited
    (``fewshot.example_part_segments``); a whole example may be."""
    parts = example_part_segments(attr.text, attr.segments)
    editable = [f for f in attr.features if f.segment.text.strip() and f.index not in parts]
    if strategy in ("all", "tpe"):
        chosen = editable
    elif strategy == "random":
        chosen = rng.sample(editable, min(top_k, len(editable)))
    else:
        chosen = sorted(editable, key=lambda f: f.mean)[:top_k]
    return sorted(f.index for f in chosen)


class FixInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``fix``. Every finished trial is in the storage (``resume=True`` continues the
    studies); ``best`` is the best template found so far, ``trials`` the finished trials."""

    def __init__(self, best: str, trials: int, study_name: str, storage: str | None) -> None:
        super().__init__(f"interrupted after {trials} finished trials")
        self.best, self.trials, self.study_name, self.storage = best, trials, study_name, storage


_JOIN_NEEDS_STORAGE = "--join shares a study between processes; give --storage (postgresql://... or journal:PATH)"
# The names ``fix`` took as keywords before FixConfig, and the recipe's: one map, read in one place.
OLD_NAMES = {"budget_trials": "trials", "budget_seconds": "seconds", "frac_train": "split", "kinds": "rewrites"}


def fix_config(config: FixConfig | None = None, **overrides: Any) -> FixConfig:
    """``config`` (default: ``FixConfig()``) with ``overrides`` applied, old names accepted."""
    names = {f.name for f in dataclasses.fields(FixConfig)}
    values: dict[str, Any] = {}  # checked against FixConfig's field names, not their types
    for key, value in overrides.items():
        key = OLD_NAMES.get(key, key)
        if key not in names:
            raise TypeError(f"fix() got an unknown setting {key!r}; FixConfig has: {', '.join(sorted(names))}")
        values[key] = tuple(value) if key == "rewrites" and value is not None else value
    return dataclasses.replace(config or FixConfig(), **values)


def check_fix_config(template: str, cases: Sequence[Case], config: FixConfig) -> None:
    """The mistakes that need no model to find, so the command line reports them before loading one."""
    if config.max_regressions is not None and config.max_regressions < 0:
        raise InputError(f"--max-regressions {config.max_regressions} is out of range; give 0 (no train case may "
                         "turn from right to wrong) or more")
    if config.strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {config.strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    if not 0.0 < config.threshold <= 1.0:
        raise InputError(f"threshold {config.threshold} is out of range; give a similarity in (0, 1], e.g. 0.8")
    if config.trials < 1:
        raise InputError(f"--trials {config.trials} is out of range; give 1 or more")
    if config.prompts is not None and config.prompts < 1:
        raise InputError(f"prompts {config.prompts} is out of range; give a budget of 1 or more prompts scored")
    if config.attribution_objective not in (None, "logprob", "margin"):
        raise InputError(f"attribution_objective {config.attribution_objective!r} is unknown; give logprob or margin "
                         "(or none: the fix's objective)")
    if config.attribution_cases is not None and config.attribution_cases < 1:
        raise InputError(f"attribution_cases {config.attribution_cases} is out of range; give 1 or more train "
                         "cases to attribute on, or none for all of them")
    if config.seconds is not None and not config.seconds > 0:
        raise InputError(f"--seconds {config.seconds} is out of range; give a time budget above 0 seconds")
    if not template.strip():
        raise InputError("the template is empty; give the prompt template to repair")
    check_vars(cases, template_fields(template), source="the cases")


def fix(
    template: str | MessageTemplate | Sequence[dict],
    cases: Sequence[Case],
    config: FixConfig | None = None,
    *,
    backend: Backend | None = None,
    similarity: SimilarityModel | None = None,
    validation: Sequence[Case] | None = None,
    attribution: Attribution | None = None,
    **overrides: Any,
) -> FixResult:
    """Repair ``template`` on ``cases``: the best meaning-preserving edit found within the budget.

    Example: ``fix("Eat a banana. Plural of {input}:", load_cases("cases.jsonl"), FixConfig(trials=12)).best``

    Cases are split into train and validation (``train_validation``: ``n_train`` or ``split``,
    shuffled by ``seed``) unless ``validation`` is given. ``overrides`` are ``FixConfig`` fields
    (or their old names, ``OLD_NAMES``) applied over ``config``. ``backend=None`` loads the
    embedded model; ``similarity=None`` the embedded sentence-embedding model.

    ``storage`` is an Optuna storage URL; by default ``sqlite:///<out>/promptlens-fix.db`` when
    ``out`` is given, in memory otherwise. ``resume`` continues the studies stored under
    ``study_name``. ``join``: one of several workers on the same ``storage`` and ``study_name``
    (see ``storage.join_study``); the trial budget is shared, and every worker returns the same
    best template. A worker waits up to ``join_wait`` seconds for the one that set up a round.

    An edit is kept only if undoing it alone would lose significantly on train: more than
    ``min_gain`` nats on average, with a one-sided skew-adjusted t lower bound over the train cases
    above 0 (``stats.significant``; with fewer than ``stats.MIN_CASES`` train cases nothing is kept); a round's result is kept only if its gain over the round's start is
    significant in the same way, else the round's start is kept. With the margin objective and
    ``keep_logprob``, a template is only kept if it raises the right label's own log-prob on train
    significantly over the round's start without lowering the margin significantly; among those the
    search keeps the best margin. On a few cases a margin moves by chance while a log-prob gain
    carries over, and a wider margin bought by making every label less likely is not a repair a
    user wants; an edit then also stays if it raises the log-prob significantly without lowering
    the margin significantly. ``max_regressions``: no template that turns more than this many train
    cases from right to wrong (``study.flip``) against ``template`` is feasible; the result lists
    the flips on train and validation either way (``FixResult.train_flips``, ``validation_flips``).
    ``strategy``: ``attribution`` edits the ``top_k`` weakest segments, ``random`` ``top_k``
    random ones, ``all`` every segment with each single edit scored first, ``tpe`` every segment
    with Optuna's TPE from the first trial (no prior on where the fault is).
    ``prompts``: a budget in prompts scored (``FixResult.prompts_scored``) over everything before the
    validation scores, the attribution ``fix`` makes included, so strategies compare at equal cost.
    It is a hard limit: a scoring request that the rest cannot pay for in full is refused, so the
    search stops, and the check of the best trial's edits (leave-one-out) after it is paid from
    the same budget; when it cannot be, the next best trials are checked with the scores already
    made (``FixRun._decide``). The validation scores and ``attribute_after`` are outside it;
    ``attribution_cases``: attribute on only the first this many train cases, a cheaper screen.
    ``attribution``: an attribution of ``template`` on the train cases made earlier (the same
    ``segmentation``), used instead of attributing again; its forward passes are not counted in
    the result's. ``attribute_after``: attribute the fixed template too (for the report).
    """
    template = as_flat(template)  # a message template: its flat text (promptlens.templates)
    config = fix_config(config, **overrides)
    check_fix_config(template, list(cases) + list(validation or []), config)
    if validation is None:
        train, valid = train_validation(cases, config)
    else:
        train, valid = list(cases), list(validation)
    if backend is None:
        from .backends.hf import load_backend

        backend = load_backend()
    return FixRun(template, train, valid, config, backend, similarity or Similarity(), all_cases=cases,
                  attribution=attribution).run()


class PromptCounter:
    """A backend as it is, but counting the prompts it is asked to score (``prompts``): the budget
    unit of ``fix`` whatever the backend batches into one forward pass (the embedded backend runs
    many prompts that share a prefix in one). With ``limit``, a request that would take the count
    above it is refused whole (``BudgetSpent``, nothing scored; ``refused`` is then set), so the
    count never exceeds the limit."""

    def __init__(self, inner: Backend, limit: int | None = None) -> None:
        self.inner = inner
        self.prompts = 0
        self.limit = limit
        self.refused = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def token_logprobs(self, prompts: Sequence[str], targets: Sequence[Sequence[str]]) -> list[list[list[float]]]:
        if self.limit is not None and self.prompts + len(prompts) > self.limit:
            self.refused = True
            raise BudgetSpent(f"{len(prompts)} prompt(s) asked for, {self.limit - self.prompts} of the budget left")
        self.prompts += len(prompts)
        return self.inner.token_logprobs(prompts, targets)


@dataclass
class _Round:
    """One round in progress: its study, and the candidates of the segments it edits."""

    number: int
    study: optuna.Study
    leader: bool
    segments: list[Segment] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)


class FixRun:
    """The state of one ``fix`` call, and its steps: each round opens a study
    (``open_round``), plans candidate rewrites for the weakest segments (``plan_candidates``),
    runs the trials (``search``) and keeps what pays significantly (``settle``)."""

    def __init__(self, template: str, train: Sequence[Case], valid: Sequence[Case], config: FixConfig,
                 backend: Backend, similarity: SimilarityModel, *, all_cases: Sequence[Case] | None = None,
                 attribution: Attribution | None = None) -> None:
        self.start = time.monotonic()
        self.template, self.train, self.valid, self.config = template, list(train), list(valid), config
        self.backend, self.similarity = PromptCounter(backend, config.prompts), similarity
        self.deadline = self.start + config.seconds if config.seconds else float("inf")
        self.objective = config.objective or default_objective(self.train)
        self.storage = config.storage
        if self.storage is None and config.out is not None:
            Path(config.out).mkdir(parents=True, exist_ok=True)
            self.storage = f"sqlite:///{Path(config.out) / 'promptlens-fix.db'}"
        self.study_name = config.study_name or default_study_name(
            template, all_cases if all_cases is not None else train, config.strategy, config.seed)
        if config.join and self.storage is None:
            raise InputError(_JOIN_NEEDS_STORAGE)
        self.where = storage_for(self.storage)
        self.rewrite_config = RewriteConfig(
            threshold=config.threshold, edit_floor=config.edit_floor, alternatives=dict(config.alternatives),
            seed=config.seed, kinds=tuple(config.rewrites) if config.rewrites else RewriteConfig.kinds)
        self.passes0 = getattr(backend, "forward_passes", 0)
        self.scorer = TemplateScorer(self.backend, self.train, self.objective)
        self.logprob_rule = config.keep_logprob and self.objective == "margin"
        self.minibatch = config.minibatch or max(2, len(self.train) // 2)  # a quarter of 16 cases prunes on noise
        self.rng = random.Random(config.seed)
        self.current = template
        self.edits: list[Edit] = []
        self.notes: list[str] = []
        self.paraphrase_cache: dict[str, list[str]] = {}
        self.trials = self.trials_total = self.pruned = self.infeasible = 0
        self.setup_seconds = 0.0
        self.study: optuna.Study | None = None  # the round in progress, for the best template so far
        self.first: _Round | None = None  # under ``join``: round 0, opened first (its leader leads the run)
        if attribution is not None and (attribution.text != template or attribution.segmentation != config.segmentation):
            raise InputError("the attribution given to fix is of another template or segmentation; attribute this "
                             "template first, or give none")
        self.given_attribution = attribution

    def _attribute(self, template: str, cases: Sequence[Case] | None = None) -> Attribution:
        """``template``'s attribution on the attribution cases. Under ``join``, when a follower has
        claimed the second half of the cases (``_attribute_part``), this worker attributes the
        first half and takes the second from the study (or attributes it too if it does not come
        in time); the halves are merged (``merge_cases``), the same result as one attribution of
        every case. Unclaimed, one attribution of every case, as a single worker makes (two
        halves cost more than one whole)."""
        if cases is None:
            cases = self._attribution_cases()
            if len(cases) >= 2 and self._claimed(template):
                mine, rest = _halves(cases)
                theirs = self._take_part(template) or self._attribute(template, rest)
                return merge_cases([self._attribute(template, mine), theirs], seed=self.config.seed)
        return attribute(template, cases=cases, backend=self.backend, segmentation=self.config.segmentation,
                         seed=self.config.seed, objective=self.config.attribution_objective)

    def _attribution_cases(self) -> list[Case]:
        return self.train[: self.config.attribution_cases] if self.config.attribution_cases else self.train

    def _attribute_part(self, template: str) -> None:
        """A follower: attribute the second half of the attribution cases of ``template`` for the
        leader (claimed first, so the leader knows to wait for it)."""
        cases = self._attribution_cases()
        if self.first is None or len(cases) < 2 or self._claimed(template):
            return
        handoff.put(self.first.study, handoff.part_key(template, "claim"), True)
        part = self._attribute(template, _halves(cases)[1])
        handoff.put(self.first.study, handoff.part_key(template, "attribution"), part)

    def _claimed(self, template: str) -> bool:
        """Whether a follower claimed the second half of ``template``'s attribution cases (``join`` only)."""
        return self.first is not None and handoff.get(self.first.study, handoff.part_key(template, "claim")) is not None

    def _take_part(self, template: str) -> Attribution | None:
        """The leader: the second half a follower claimed and attributed (None if it does not come in time)."""
        if self.first is None:
            return None
        until = min(self.deadline, time.monotonic() + self.config.join_wait)
        return handoff.take(self.first.study, handoff.part_key(template, "attribution"), until=until)

    def out_of_passes(self) -> bool:
        """Whether the budget of prompts scored (``FixConfig.prompts``) is spent."""
        return self.config.prompts is not None and (self.backend.refused or self.backend.prompts >= self.config.prompts)

    def run(self) -> FixResult:
        with kept_prefixes(self.backend):  # every trial after the first reuses the template's shared start
            return self._run()

    def _run(self) -> FixResult:
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # its warnings (a Ctrl-C traceback) are not for users
        if self.config.join:
            self.first = self._open_first()
            self.scorer.shared = handoff.SharedScores(self.first.study)
        if not self._take_setup():
            try:
                self._setup()
            except BudgetSpent:
                raise InputError(f"a budget of {self.config.prompts} prompts scored is spent before the search "
                                 f"starts (the original's {len(self.train)} train scores, the attribution and the "
                                 "example checks); give a larger --prompts budget, or fewer --attribution-cases"
                                 ) from None
        if len(self.train) < MIN_CASES:
            self.notes.append(f"{len(self.train)} train case(s): a gain needs at least {MIN_CASES} to be shown "
                              "significant, so no edit can be kept; give more cases")
        self.bar = _progress(self.config.trials, self.config.progress)
        try:
            for r in range(self.config.rounds):
                if not self.round(r):
                    break
        except KeyboardInterrupt as exc:  # Ctrl-C: every finished trial is already in the storage
            raise self.interrupted() from exc
        finally:
            self.bar.close()
        return self.result()

    def _setup(self) -> None:
        """Score the original on train, attribute it, check its examples; under ``join`` the run's
        leader hands these to the other workers (``handoff.SETUP``)."""
        self.scorer.mean(self.template)  # through the scorer's memo: trial 0 then costs no forward pass
        self.train_before = summarize_scores([self.scorer.memo[(self.template, i)] for i in range(len(self.train))],
                                             self.train, self.objective)
        self.attr_before = self.attr = self.given_attribution or self._attribute(self.template)
        notes = [n for n in self.attr_before.notes if n in render_notes(self.backend, self.template)]
        # A doubtful example label: reported, never changed.
        notes += check_notes(check_examples(self.backend, self.template, self.train))
        self.notes += notes
        if self.first is not None and self.first.leader:
            handoff.put(self.first.study, handoff.SETUP, {
                "train": [self.scorer.memo[(self.template, i)] for i in range(len(self.train))],
                "attribution": self.attr_before, "notes": notes})

    def _take_setup(self) -> bool:
        """A follower: the leader's ``_setup``, once it is stored (False if it does not come in time)."""
        if self.first is None or self.first.leader:
            return False
        until = min(self.deadline, time.monotonic() + self.config.join_wait)
        if handoff.get(self.first.study, handoff.SETUP) is None:
            self._attribute_part(self.template)  # meanwhile: half of the leader's attribution,
            self._validation(self.template)  # and the validation scores every worker's result needs
        setup = handoff.take(self.first.study, handoff.SETUP, until=until)
        if setup is None:
            return False
        self.scorer.memo.update(((self.template, i), score) for i, score in enumerate(setup["train"]))
        self.train_before = summarize_scores(setup["train"], self.train, self.objective)
        self.attr_before = self.attr = setup["attribution"]
        self.notes += setup["notes"]
        return True

    def _inputs(self) -> dict[str, str]:
        """What every worker of a shared study must have been given alike (``handoff.fingerprint``)."""
        c = self.config
        settings = {k: getattr(c, k) for k in (
            "strategy", "trials", "threshold", "edit_floor", "top_k", "rounds", "seed", "objective", "rewrites",
            "segmentation", "attribution_cases", "attribution_objective", "min_gain", "keep_logprob", "minibatch",
            "max_regressions", "attribute_after")}
        settings["alternatives"] = {k: list(v) for k, v in c.alternatives.items()}
        settings["rewrites"] = list(c.rewrites) if c.rewrites else None
        settings["model"] = str(getattr(self.backend, "name", type(self.backend).__name__))
        return handoff.fingerprint(self.template, self.train, self.valid, settings)

    def _open_first(self) -> _Round:
        """Round 0's study, before anything is computed: its creator leads the run and stores what it
        was given; every other worker checks it was given the same (else exit 2) and follows."""
        rnd = self.open_round(0)
        if rnd.leader:
            handoff.store_inputs(rnd.study, self._inputs())
        else:
            wait_for(rnd.study, handoff.INPUTS, until=min(self.deadline, time.monotonic() + self.config.join_wait))
            handoff.check_inputs(rnd.study, self._inputs())
        return rnd

    def round(self, r: int) -> bool:
        """One round; False when no further round should run."""
        round_start = time.monotonic()
        if r > 0 and self.deadline - round_start < 1.5 * self.setup_seconds:
            # A round first attributes and samples rewrites; without time for that and some trials, stop.
            self.notes.append(f"round {r + 1}: skipped, too little of the time budget left")
            return False
        rnd = self.open_round(r)
        try:
            self.plan_candidates(rnd)
        except BudgetSpent:
            self.notes.append(f"round {r + 1}: the budget of {self.config.prompts} prompts scored was spent while "
                              "attributing or generating candidates; give a larger one")
            return False
        self.setup_seconds = time.monotonic() - round_start + (self.attr_before.seconds if r == 0 else 0.0)
        rnd.slots = [s for s in rnd.slots if len(s.rewrites) > 1]
        if not rnd.slots:
            self.notes.append(f"round {r + 1}: no candidate rewrite passed the similarity and fluency filters")
            return False
        outcome = self.search(rnd)
        if outcome is None:
            self.notes.append(f"round {r + 1}: the budget of {self.config.prompts} prompts scored was spent before "
                              "its first trial; give a larger one" if self.out_of_passes() else
                              f"round {r + 1}: the time budget ran out before its first trial; give more seconds")
            return False
        improved = self.settle(rnd, outcome)
        self.study = None  # the round is done: its best is `current` now
        # Unimproved, the same template would be attributed the same way: another round finds nothing new.
        return not ((not improved and self.config.strategy == "attribution")
                    or self.trials_total >= self.config.trials or time.monotonic() >= self.deadline
                    or self.out_of_passes())

    def _share(self, r: int) -> int:
        """What is left of the trial budget, split evenly over the rounds still to run (ceil:
        every round gets a trial)."""
        return -(-(self.config.trials - self.trials_total) // (self.config.rounds - r))

    def open_round(self, r: int) -> _Round:
        """The round's study: created (or resumed, or joined: then maybe another worker leads it)."""
        if r == 0 and self.first is not None:  # opened before the setup (``_open_first``)
            self.study = self.first.study
            return self.first
        name, seed = f"{self.study_name}:round{r}", self.config.seed + r
        if self.config.join:
            if self.where is None:  # refused in __init__ already
                raise InputError(_JOIN_NEEDS_STORAGE)
            study, leader = join_study(self.where, name, seed=seed)
        else:
            study, leader = open_study(self.where, name, seed=seed, resume=self.config.resume), True
        self.study = study
        return _Round(r, study, leader)

    def plan_candidates(self, rnd: _Round) -> None:
        """The segments to edit and their candidate rewrites: chosen here by the round's leader,
        read from the study by every other worker."""
        if not rnd.leader:
            self._follow(rnd)
            return
        if rnd.number > 0:
            self.attr = self._attribute(self.current)
        rnd.segments, block_of = _with_example_blocks(list(self.attr.segments), self.rewrite_config.kinds)
        stored = stored_slots(rnd.study, self.current, rnd.segments) if self.config.resume or self.config.join else None
        if stored is not None:  # resumed: re-queue trial 0 if a kill cut it off before it finished
            rnd.slots = stored
            enqueue_original(rnd.study, [s for s in stored if len(s.rewrites) > 1])
            return
        if rnd.study.trials:  # a resumed round whose starting template or segments changed: start it afresh
            rnd.study = self.study = open_study(self.where, rnd.study.study_name, seed=self.config.seed + rnd.number,
                                                resume=False)
            self.notes.append(f"round {rnd.number + 1}: the stored study started from another template or "
                              "segmentation; started afresh")
        rnd.slots = self._generate(rnd, block_of)
        editable = [s for s in rnd.slots if len(s.rewrites) > 1]
        # Trial 0 goes in before the slots are published: workers waiting for them cannot sample a trial ahead of it.
        enqueue_original(rnd.study, editable)
        if not self.config.join and self.config.strategy != "tpe":  # then every single edit (within the round's share)
            enqueue_single_edits(rnd.study, editable, self._share(rnd.number) - 1)
        store_slots(rnd.study, self.current, rnd.slots, rnd.segments)

    def _generate(self, rnd: _Round, block_of: Mapping[int, int]) -> list[Slot]:
        """Candidates for the chosen segments (a few-shot example stands for its block of examples)."""
        slots: list[Slot] = []
        chosen = dict.fromkeys(block_of[i] for i in _choose(self.attr, self.config.strategy, self.config.top_k, self.rng))
        self._label_note()
        for i in chosen:
            if slots and time.monotonic() >= self.deadline:
                self.notes.append(f"round {rnd.number + 1}: the time budget ran out while generating candidates")
                break
            slots.append(Slot(i, tuple(candidates(rnd.segments, i, original=self.template, backend=self.backend,
                                                  similarity=self.similarity, cases=self.train,
                                                  config=self.rewrite_config, cache=self.paraphrase_cache))))
        return slots

    def _label_note(self) -> None:
        """Say which parts of few-shot examples were left out of the edits, naming those attribution
        ranks among the ``top_k`` weakest (only dropping their example, at segmentation unit, could act)."""
        parts = example_part_segments(self.attr.text, self.attr.segments)
        if not parts:
            return
        labels = answer_segments(self.attr.text, self.attr.segments)
        weakest = sorted((f for f in self.attr.features if f.segment.text.strip()), key=lambda f: f.mean)
        blamed = [f for f in weakest[: self.config.top_k] if f.index in parts]
        note = (f"{len(parts)} segment(s) in few-shot examples were left as written ({len(labels)} in answers, which "
                "are labels; deleting a question would leave an answer to nothing); to drop or reorder whole "
                "examples, use segmentation unit (the default) or example")
        if blamed:
            named = ", ".join(f"{f.segment.text.strip()[:40]!r} ({f.mean:+.2f} nats)" for f in blamed)
            note += f"; attribution ranks these among the {self.config.top_k} weakest segments: {named}"
        if note not in self.notes:
            self.notes.append(note)

    def _follow(self, rnd: _Round) -> None:
        """Another worker set this round up: take its starting template and candidates."""
        until = min(self.deadline, time.monotonic() + self.config.join_wait)
        self.current = str(wait_for(rnd.study, "start_template", until=until))
        if rnd.number == 0 and self.current != self.template:
            raise InputError(f"study {rnd.study.study_name!r} was started from another template; give every worker "
                             "the same recipe, or give a new --study")
        wait_for(rnd.study, "slots", until=until)
        segments = segment(self.current, self.config.segmentation, tokenizer=getattr(self.backend, "tokenizer", None))
        rnd.segments = _with_example_blocks(segments, self.rewrite_config.kinds)[0]
        stored = stored_slots(rnd.study, self.current, rnd.segments)
        if stored is None:
            raise InputError(f"study {rnd.study.study_name!r} cuts the template into other segments than this worker "
                             f"(segmentation {self.config.segmentation!r}, rewrite kinds); give every worker the "
                             "same recipe, or give a new --study")
        rnd.slots = stored

    def search(self, rnd: _Round) -> StudyOutcome | None:
        """The round's trials, within its share of the budget; None when none finished."""
        outcome = run_study(
            rnd.study, rnd.segments, rnd.slots, scorer=self.scorer, similarity=self.similarity,
            original=self.template, threshold=self.config.threshold, budget=self._share(rnd.number),
            deadline=self.deadline, minibatch=self.minibatch, shared=self.config.join,
            logprob_baseline=self.current if self.logprob_rule else None, max_regressions=self.config.max_regressions,
            on_trial=lambda s, t: _tick(self.bar, s, t, self.deadline), stop=lambda: self._stop(rnd),
        )
        if outcome is not None:
            self.trials += outcome.trials_run
            self.trials_total += outcome.trials_total
            self.pruned += outcome.pruned
            self.infeasible += outcome.infeasible
        return outcome

    def _stop(self, rnd: _Round) -> bool:
        """Whether the search must stop before another trial: the budget is spent, or what is left
        of it is only what checking a trial needs. The trial is the one ``_decide`` would settle
        for: the best, or when its check (``check_cost``) costs more than is left, the next best
        whose check can be paid. Another trial scores at most every train case; if it then
        becomes the best and cannot be checked, that one still can. While no trial that edits
        something can be checked, the search goes on."""
        if self.out_of_passes():
            return True
        left = self._left()
        if left is None or not rnd.leader:
            return False
        ranked = ranked_choices(rnd.study, rnd.slots)
        edited = [c for c in ranked if any(c)]
        best = edited[0] if self.logprob_rule and edited else (ranked[0] if ranked else None)
        if best is None or not any(best):  # nothing beats the round's start yet
            return False
        for choice in [best, *[c for c in edited if c != best]]:
            cost = check_cost(rnd.segments, rnd.slots, choice, self.scorer)
            if cost <= left:
                return left - len(self.train) < cost
        return False

    def _left(self) -> int | None:
        """What is left of the budget of prompts scored (None: no budget)."""
        return None if self.config.prompts is None else self.config.prompts - self.backend.prompts

    def settle(self, rnd: _Round, outcome: StudyOutcome) -> bool:
        """Keep the round's edits that pay significantly (the leader decides; the others read its
        choice and edits, so every worker returns the same template). True when the template changed."""
        edits: list[Edit] | None = None
        if rnd.leader:
            choice = self._decide(rnd, outcome)
            best = template_for(rnd.segments, rnd.slots, choice)
            if best != self.current:
                edits = _edits(rnd.number, rnd.segments, rnd.slots, choice, self.scorer, logprob=self.logprob_rule)
            if self.config.join:
                handoff.put(rnd.study, handoff.EDITS, edits or [])  # before the result, which the others wait for
                store_result(rnd.study, choice)
        else:
            until = min(self.deadline, time.monotonic() + self.config.join_wait)
            choice = stored_result(rnd.study, until=until)
            best = template_for(rnd.segments, rnd.slots, choice)
            edits = handoff.get(rnd.study, handoff.EDITS) if best != self.current else None
        if best == self.current:
            return False
        if edits is None:  # a leader that stored none: work them out here
            edits = _edits(rnd.number, rnd.segments, rnd.slots, choice, self.scorer, logprob=self.logprob_rule)
        self.edits += edits
        self.current = best
        return True

    def _decide(self, rnd: _Round, outcome: StudyOutcome) -> list[int]:
        """The best trial, checked (``_check``); the check is paid from the same budget of prompts
        scored as the search. When what is left cannot pay for it, the next best complete trials
        are checked in turn, each as far as the scores already made (the memo) and the rest of the
        budget allow: a single edit's check needs only its own and the start's scores. If none can
        be checked, the round's start is kept."""
        first = tuple(outcome.best_choice)
        tried = [first, *[c for c in ranked_choices(rnd.study, rnd.slots) if c != first and any(c)]]
        for n, candidate in enumerate(tried):
            try:
                choice = self._check(rnd, candidate)
                # the kept edits' report (settle) reuses the check's scores; make sure they are paid for
                _edits(rnd.number, rnd.segments, rnd.slots, choice, self.scorer, logprob=self.logprob_rule)
            except BudgetSpent:
                continue
            if n:
                self.notes.append(f"round {rnd.number + 1}: the budget of {self.config.prompts} prompts scored could "
                                  f"not pay for checking the best trial's edits; checked the trial ranked {n + 1} "
                                  "instead, with the scores already made")
            return choice
        self.notes.append(f"round {rnd.number + 1}: the budget of {self.config.prompts} prompts scored could not pay "
                          "for checking any trial's edits; kept the round's starting template; give a larger budget")
        return [0] * len(rnd.slots)

    def _check(self, rnd: _Round, best: Sequence[int]) -> list[int]:
        """A trial's choice, its passenger edits undone, kept only if its gain is significant
        (raises ``BudgetSpent`` when the budget cannot pay for the scores this needs)."""
        start, min_gain, rule = self.current, self.config.min_gain, self.logprob_rule  # never below the round's start

        def feasible(t: str) -> bool:
            limit = self.config.max_regressions
            if limit is not None and self.scorer.regressions(t, self.template) > limit:
                return False
            return self.similarity.cosine(self.template, t) >= self.config.threshold and (
                t == start or _accept(t, start, self.scorer, min_gain, rule)
                or (not rule and self.scorer.mean(t) >= self.scorer.mean(start)))

        choice = _simplify(rnd.segments, rnd.slots, best, self.scorer, min_gain, feasible, logprob_rule=rule,
                           left=self._left)
        undone = sum(1 for a, b in zip(best, choice) if a and not b)
        r = rnd.number
        if undone:
            self.notes.append(f"round {r + 1}: undid {undone} edit(s) of the best trial whose gain on train was "
                              "not significant (one-sided skew-adjusted t lower bound at or below 0)")
        if any(choice) and not _accept(template_for(rnd.segments, rnd.slots, choice), start, self.scorer, min_gain,
                                       rule):
            self.notes.append(f"round {r + 1}: the best template's gain on train was not significant; "
                              "kept the round's starting template")
            choice = [0] * len(rnd.slots)
        return choice

    def interrupted(self) -> FixInterrupted:
        """Ctrl-C: what to tell the caller (every finished trial is in the storage)."""
        study = self.study
        if study is not None:
            fail_running_trials(study, only_mine=self.config.join)
        so_far = best_template(study) if study is not None else None
        return FixInterrupted(so_far[0] if so_far else self.current,
                              self.trials_total + (finished(study) if study else 0), self.study_name, self.storage)

    def _validation(self, template: str) -> list[Score]:
        """``template``'s scores on the validation cases: under ``join`` taken from the study where a
        worker stored them (``handoff.validation_key``), else scored here and stored for the others."""
        key = handoff.validation_key(template)
        stored = handoff.get(self.first.study, key) if self.first is not None else None
        if stored is not None:
            return list(stored)
        (row,) = score_prompts(self.backend, [[fill(template, case.vars) for case in self.valid]], self.valid)
        if self.first is not None:
            handoff.put(self.first.study, key, row)
        return row

    def _take_final(self) -> dict[str, Any] | None:
        """A follower: the leader's final scores and attribution, if they are of this worker's fixed template.
        While the leader attributes the fixed template, the follower scores it on validation."""
        if self.first is None or self.first.leader:
            return None
        if handoff.get(self.first.study, handoff.FINAL) is None:
            if self.config.attribute_after and self.current != self.template:
                self._attribute_part(self.current)  # half of the fixed template's attribution, for the leader
            if self.valid:
                self._validation(self.current)
        until = min(self.deadline, time.monotonic() + self.config.join_wait)
        final = handoff.take(self.first.study, handoff.FINAL, until=until)
        return final if final is not None and final["current"] == self.current else None

    def result(self) -> FixResult:
        if self.logprob_rule:
            self.notes.append("margin objective: a round's edits were kept only if they raised the right label's "
                              "log-prob on train significantly (one-sided skew-adjusted t lower bound above 0) without lowering the "
                              "margin significantly; drop this rule with --allow-logprob-drop")
        template, current, valid, objective, train = self.template, self.current, self.valid, self.objective, self.train
        c = self.config
        final = self._take_final()
        if final is not None:
            attr_after, train_rows, valid_rows = final["attribution_after"], final["train"], final["validation"]
            rows = dict(zip((template, current), train_rows))
        else:
            for t in (template, current):
                self.scorer.mean(t)  # memoised: no new forward pass (the check scored `current` within the budget)
            rows = {t: [self.scorer.memo[(t, i)] for i in range(len(train))] for t in (template, current)}
        prompts = self.backend.prompts
        self.backend.limit = None  # the validation scores and the report's attribution are outside the budget
        if final is None:
            valid_rows = [self._validation(t) for t in (template, current)] if valid else None
        validation_prompts = self.backend.prompts - prompts
        if final is None:
            attr_after = self.attr_before if current == template or not c.attribute_after else self._attribute(current)
            if self.first is not None and self.first.leader:
                handoff.put(self.first.study, handoff.FINAL, {
                    "current": current, "attribution_after": attr_after, "train": [rows[template], rows[current]],
                    "validation": valid_rows})
        return FixResult(
            original=template, best=current, objective=objective, strategy=c.strategy, threshold=c.threshold,
            similarity=self.similarity.cosine(template, current),
            train_before=self.train_before, train_after=summarize_scores(rows[current], train, objective),
            validation_before=summarize_scores(valid_rows[0], valid, objective) if valid_rows else None,
            validation_after=summarize_scores(valid_rows[1], valid, objective) if valid_rows else None,
            train_flips=flips(rows[template], rows[current], train, "train"),
            validation_flips=flips(valid_rows[0], valid_rows[1], valid, "validation") if valid_rows else None,
            max_regressions=c.max_regressions,
            validation_logprob_low=lower_bound([a.logprob - b.logprob for b, a in zip(*valid_rows)])
            if valid_rows else None,
            edits=tuple(self.edits), attribution_before=self.attr_before,
            attribution_after=attr_after,
            trials=self.trials, trials_total=self.trials_total, pruned=self.pruned, infeasible=self.infeasible,
            forward_passes=getattr(self.backend, "forward_passes", 0) - self.passes0,
            seconds=time.monotonic() - self.start, seed=c.seed, study_name=self.study_name, storage=self.storage,
            notes=tuple(self.notes), logprob_rule=self.logprob_rule,
            prompts_scored=prompts, validation_prompts=validation_prompts,
            scores_taken=self.scorer.shared.taken if self.scorer.shared is not None else 0,
        )


def _halves(cases: Sequence[Case]) -> tuple[Sequence[Case], Sequence[Case]]:
    """The attribution cases the leader (first) and a follower (second) attribute under ``join``."""
    half = (len(cases) + 1) // 2
    return cases[:half], cases[half:]


def _with_example_blocks(segments: list[Segment], kinds: Sequence[str]) -> tuple[list[Segment], dict[int, int]]:
    """Adjacent few-shot examples as one block segment (drop/reorder candidates) when those kinds
    are on; else the segments as they are."""
    if not any(k in kinds for k in EXAMPLE_KINDS) or not any(s.kind == "example" for s in segments):
        return segments, {i: i for i in range(len(segments))}
    return merge_examples(segments)


def _loo(segments: Sequence[Segment], slots: Sequence[Slot], choice: Sequence[int], scorer: TemplateScorer,
         objective: str | None = None) -> dict[int, list[float]]:
    """Per edited slot: the per-case train gains lost if that edit alone is undone."""
    best = template_for(segments, slots, choice)
    return {k: scorer.gains(best, template_for(segments, slots, [0 if j == k else c for j, c in enumerate(choice)]),
                            objective=objective)
            for k, c in enumerate(choice) if c}


def _loo_templates(segments: Sequence[Segment], slots: Sequence[Slot], choice: Sequence[int]) -> list[str]:
    return [template_for(segments, slots, [0 if j == k else c for j, c in enumerate(choice)])
            for k, c in enumerate(choice) if c]


def _missing(scorer: TemplateScorer, templates: Sequence[str]) -> int:
    """Prompts scoring ``templates`` on every train case would cost: what the memo lacks."""
    return sum(1 for t in dict.fromkeys(templates) for i in range(len(scorer.cases)) if (t, i) not in scorer.memo)


def check_cost(segments: Sequence[Segment], slots: Sequence[Slot], choice: Sequence[int],
               scorer: TemplateScorer) -> int:
    """Prompts the first leave-one-out pass over ``choice``'s edits would score (what the memo
    lacks), plus one template's train scores when it has several edits (the template with every
    weak edit undone at once, ``_simplify``'s bounded step)."""
    loo = _loo_templates(segments, slots, choice)
    return _missing(scorer, loo) + (len(scorer.cases) if len(loo) > 1 else 0)


def _simplify(segments: Sequence[Segment], slots: Sequence[Slot], choice: Sequence[int], scorer: TemplateScorer,
              min_gain: float, feasible: Callable[[str], bool], *, logprob_rule: bool = False,
              left: Callable[[], int | None] = lambda: None) -> list[int]:
    """Undo, one at a time, the edits that do not pay significantly: the best trial often carries
    passengers, edits that were sampled along with a useful one and add nothing, or whose gain on
    the train cases is luck. An edit stays if undoing it alone loses significantly on train
    (``significant``: mean over ``min_gain``, skew-adjusted t lower bound over 0), or, with
    ``logprob_rule`` (margin objective), if it raises the right label's log-prob significantly
    without lowering the margin. The weakest is undone first; an undo that makes the template
    infeasible (``feasible``: similarity, the round's starting score, the log-prob rule) is skipped.

    Within a budget of prompts scored (``left``: what is left of it, None for none): the first
    pass is made only if ``check_cost`` can be paid (else ``BudgetSpent``, nothing scored); when a
    further pass and one more template cannot be paid, only the strongest edit that paid
    significantly in the last pass is kept, alone (its own check is then its gain over the start,
    one template's scores), if that template is feasible (else ``BudgetSpent``); none when none paid."""
    choice = list(choice)
    strong: list[int] = []
    passes = 0
    while any(choice):
        budget = left()
        if budget is not None and not passes and check_cost(segments, slots, choice, scorer) > budget:
            raise BudgetSpent(f"checking {sum(1 for c in choice if c)} edit(s) costs more than the {budget} prompts left")
        if budget is not None and passes and (_missing(scorer, _loo_templates(segments, slots, choice))
                                              + len(scorer.cases) > budget):
            bounded = [c if strong and k == strong[0] else 0 for k, c in enumerate(choice)]
            if not any(bounded) or feasible(template_for(segments, slots, bounded)):
                return bounded
            raise BudgetSpent("the bounded check's template is not feasible")
        gains = _loo(segments, slots, choice, scorer)
        lp = _loo(segments, slots, choice, scorer, objective="logprob") if logprob_rule else {}
        passes += 1
        weak = [k for k, g in gains.items() if not significant(g, min_gain=min_gain)
                and not (k in lp and significant(lp[k], min_gain=min_gain) and not significant([-x for x in g]))]
        strong = sorted((k for k in gains if k not in weak), key=lambda k: -sum(gains[k]))
        for k in sorted(weak, key=lambda k: sum(gains[k])):
            undone = [0 if j == k else c for j, c in enumerate(choice)]
            if feasible(template_for(segments, slots, undone)):
                choice = undone
                break
        else:
            break
    return choice


def _accept(best: str, start: str, scorer: TemplateScorer, min_gain: float, logprob_rule: bool) -> bool:
    """A round's result is kept only if its gain on train over the round's start is significant:
    the objective's, or, with ``logprob_rule`` (margin objective), the right label's log-prob,
    with the margin not significantly lower."""
    if best == start:
        return True
    if logprob_rule:
        return (significant(scorer.gains(best, start, objective="logprob"), min_gain=min_gain)
                and not significant([-g for g in scorer.gains(best, start)]))
    return significant(scorer.gains(best, start), min_gain=min_gain)


def _edits(r: int, segments: Sequence[Segment], slots: Sequence[Slot], choice: Sequence[int],
           scorer: TemplateScorer, *, logprob: bool = False) -> list[Edit]:
    """The kept edits of a round, each with its leave-one-out gain on train (and, with ``logprob``,
    its leave-one-out gain in the target log-prob)."""
    loo = _loo(segments, slots, choice, scorer)
    gains = {k: sum(g) / len(g) for k, g in loo.items()}
    lp = {k: sum(g) / len(g) for k, g in _loo(segments, slots, choice, scorer, objective="logprob").items()} \
        if logprob else {}
    out = []
    for k, (slot, c) in enumerate(zip(slots, choice)):
        if c == 0:
            continue
        rw = slot.rewrites[c]
        out.append(Edit(
            round=r, segment_index=slot.segment_index, old=segments[slot.segment_index].text, new=rw.text,
            kind=rw.kind, similarity=rw.similarity, segment_similarity=rw.segment_similarity, gain=gains[k],
            logprob_gain=lp.get(k), gain_low=lower_bound(loo[k]), n_cases=len(loo[k]), confidence=DEFAULT_CONFIDENCE,
        ))
    return out


def _progress(total: int, enabled: bool) -> tqdm[NoReturn]:
    from tqdm import tqdm

    return tqdm(total=total, desc="fix", unit="trial", disable=not enabled, leave=False)


def _tick(bar: tqdm[NoReturn], study: optuna.Study, trial: optuna.trial.FrozenTrial, deadline: float) -> None:
    bar.update(1)
    done = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    left = deadline - time.monotonic()
    bar.set_postfix(best=f"{max(done):.3f}" if done else "-", left=f"{left:.0f}s" if left < 1e9 else "∞")
