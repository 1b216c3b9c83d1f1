"""``fix``: attribution-guided, meaning-preserving repair of a prompt template.

    score original ──► attribute (train) ──► weakest segments ──► candidate rewrites
          ▲                                                              │
          └──────────── re-attribute the best ◄── Optuna study over edits ◄┘

The best template is chosen on the train cases only; the validation cases are scored before and
after, never searched on, so the reported gain there is an honest estimate. The original template
is trial 0 of every round, and a round's edits are kept only if their gain over the round's start
is significant on train (a one-sided t lower bound over the cases above 0, ``promptlens.stats``;
never with fewer than ``stats.MIN_CASES`` train cases), else the start is kept.
With the margin objective and ``keep_logprob`` the gain that must be significant is the right
label's log-prob (the margin may then move on train by a non-significant amount).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna

from .attribution import attribute
from .cases import check_vars, split_cases
from .errors import InputError
from .rewrites import RewriteConfig, candidates, split_whitespace
from .scoring import Backend, default_objective, score_prompts
from .search import (Slot, TemplateScorer, best_template, enqueue_original, enqueue_single_edits,
                     fail_running_trials, finished, flip,
                     join_study, open_study, run_study, storage_for, store_result, store_slots,
                     stored_result, stored_slots, template_for, wait_for)
from .fewshot import EXAMPLE_KINDS, check_examples, check_notes, merge_examples
from .segments import fill, segment, template_fields
from .templates import MessageTemplate, as_flat, render_notes
from .similarity import Similarity, SimilarityModel
from .stats import DEFAULT_CONFIDENCE, MIN_CASES, lower_bound, significant
from .types import Attribution, Case, Score, Segment

STRATEGIES = ("attribution", "random", "all", "tpe")


@dataclass(frozen=True)
class Summary:
    """A template's scores on a set of cases (means over cases; nats)."""

    n_cases: int
    objective: float  # the mean of what the search maximises
    logprob: float
    accuracy: float | None  # choice cases only
    margin: float | None


@dataclass(frozen=True)
class Flips:
    """The cases whose verdict the fix changed (``search.flip``), each named by its id or its
    split and position, with its first field's value: ``lost`` were right with the original
    template and are wrong with the fixed one, ``gained`` the reverse. ``rule``: "correct" (the
    right label scores best) on choice cases; on free-form targets "logprob" (the target became
    less than half / more than twice as likely)."""

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

    @property
    def improved(self) -> bool:
        return self.best != self.original

    def studies(self) -> list[Any]:
        """The Optuna studies of this repair, one per round (``NAME:round0``, ...), loaded from
        ``storage``; empty when the storage holds none. Raises what the storage raises."""
        import optuna

        if not self.storage:
            return []
        prefix = f"{self.study_name}:round"
        names = optuna.study.get_all_study_names(storage=self.storage)
        rounds = sorted((int(n[len(prefix):]), n) for n in names if n.startswith(prefix) and n[len(prefix):].isdigit())
        return [optuna.load_study(study_name=n, storage=self.storage) for _, n in rounds]

    def to_dataframe(self) -> Any:
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
        from .html_report import fix_html, notebook_html

        return notebook_html(fix_html(self))

    @property
    def headline(self) -> str:
        """The result in one plain sentence: which harmful segment attribution found, what the fix
        did to it, and how the wanted output's probability moved on the validation cases (train
        when there are none); the terminal and HTML reports both lead with it."""
        return headline(self)


def _pct(p: float) -> str:
    return f"{p:.2%}" if p < 0.01 else f"{p:.1%}"


def headline(result: FixResult) -> str:
    """See ``FixResult.headline``."""
    worst = min(result.attribution_before.features, key=lambda f: f.mean, default=None)
    if worst is not None and worst.harmful:
        from .templates import shown

        text = " ".join(shown(worst.segment.text).split())
        text = text if len(text) <= 60 else text[:59] + "…"
        found = f"attribution found the harmful segment \u2018{text}\u2019 ({worst.mean:+.2f} nats)"
        touched = [e for e in result.edits if e.round == 0 and e.segment_index == worst.index]
        if touched:
            found += " and the fix " + ("removed it" if not touched[0].new.strip() else "rewrote it")
        elif result.edits:
            found += f", but the fix left it and edited {len(result.edits)} other segment(s)"
    else:
        attr = result.attribution_before
        found = (f"attribution found no segment that is harmful ({attr.interval_text()}, corrected for "
                 f"{len(attr.features)} segments: {attr.correction_text()})" if attr.has_verdicts else
                 f"attribution could not call any segment harmful: {attr.n_cases} train case(s), fewer than a "
                 "verdict needs")
        if result.edits:
            found += f"; the fix edited {len(result.edits)} segment(s)"
    if not result.edits:
        return found[0].upper() + found[1:] + "; no edit beat the original on train, so the prompt is kept as it is."
    before, after, where = ((result.validation_before, result.validation_after, "validation")
                            if result.validation_before and result.validation_after
                            else (result.train_before, result.train_after, "train"))
    p0, p1 = math.exp(before.logprob), math.exp(after.logprob)
    low = result.validation_logprob_low if where == "validation" else None
    verb = "rose" if p1 > p0 else "fell" if p1 < p0 else "stayed"
    how = (" significantly" if low is not None and low > 0 else
           " (not significantly)" if low is not None and verb == "rose" else "")
    move = f"from {_pct(p0)} to {_pct(p1)}" if verb != "stayed" else f"at {_pct(p0)}"
    sentence = (f"{found[0].upper() + found[1:]}; the probability of the wanted output {verb}{how} {move} "
                f"on {before.n_cases} {where} cases")
    flips = result.validation_flips if where == "validation" else result.train_flips
    if flips is not None:
        sentence += f" ({len(flips.lost)} turned wrong, {len(flips.gained)} turned right)"
    return sentence + "."


def summarize(backend: Backend, template: str, cases: Sequence[Case], objective: str) -> Summary:
    (row,) = score_prompts(backend, [[fill(template, c.vars) for c in cases]], cases)
    return _summary(row, objective)


def _summary(row: Sequence[Score], objective: str) -> Summary:
    from .scoring import objective_value

    n = len(row)
    margins = [s.margin for s in row if s.margin is not None]
    has_choices = len(margins) == n
    return Summary(
        n_cases=n,
        objective=sum(objective_value(s, objective) for s in row) / n,
        logprob=sum(s.logprob for s in row) / n,
        accuracy=sum(bool(s.correct) for s in row) / n if has_choices else None,
        margin=sum(margins) / n if has_choices else None,
    )


def flips(before: Sequence[Score], after: Sequence[Score], cases: Sequence[Case], split: str) -> Flips:
    """Which cases turned from right to wrong (``lost``) and back (``gained``); see ``Flips``."""
    def name(i: int, case: Case) -> str:
        first = next(iter(case.vars.values()), "")
        first = " ".join(str(first).split())
        return (case.id or f"{split} {i + 1}") + (f": {first[:40]}{'…' if len(first) > 40 else ''}" if first else "")

    moved = [(flip(b, a), name(i, c)) for i, (b, a, c) in enumerate(zip(before, after, cases))]
    rule = "correct" if all(b.correct is not None for b in before) else "logprob"
    return Flips(lost=tuple(n for f, n in moved if f < 0), gained=tuple(n for f, n in moved if f > 0), rule=rule)


def default_study_name(template: str, cases: Sequence[Case], strategy: str, seed: int) -> str:
    """Stable across runs of the same problem, so ``resume`` finds the study without a name."""
    key = repr((template, [(dict(c.vars), c.target, c.choices) for c in cases], strategy, seed))
    return "fix-" + hashlib.sha1(key.encode()).hexdigest()[:10]


def _choose(attr: Attribution, strategy: str, top_k: int, rng: random.Random) -> list[int]:
    """Segment indices to edit: the weakest by attribution, a random few, or every feature (``all``,
    and ``tpe``, which differs from ``all`` in the search: no single edits queued first)."""
    editable = [f for f in attr.features if f.segment.text.strip()]
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


def check_fix_args(template: str, cases: Sequence[Case], *, strategy: str, threshold: float,
                   budget_trials: int, budget_seconds: float | None, max_regressions: int | None = None) -> None:
    """The mistakes that need no model to find, so the command line reports them before loading one."""
    if max_regressions is not None and max_regressions < 0:
        raise InputError(f"--max-regressions {max_regressions} is out of range; give 0 (no train case may turn "
                         "from right to wrong) or more")
    if strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"threshold {threshold} is out of range; give a similarity in (0, 1], e.g. 0.8")
    if budget_trials < 1:
        raise InputError(f"--trials {budget_trials} is out of range; give 1 or more")
    if budget_seconds is not None and not budget_seconds > 0:
        raise InputError(f"--seconds {budget_seconds} is out of range; give a time budget above 0 seconds")
    if not template.strip():
        raise InputError("the template is empty; give the prompt template to repair")
    check_vars(cases, template_fields(template), source="the cases")


def fix(
    template: str | MessageTemplate | Sequence[dict],
    cases: Sequence[Case],
    *,
    backend: Backend | None = None,
    similarity: SimilarityModel | None = None,
    strategy: str = "attribution",
    budget_trials: int = 30,
    budget_seconds: float | None = None,
    threshold: float = 0.8,
    edit_floor: float = 0.5,
    top_k: int = 3,
    rounds: int = 2,
    seed: int = 0,
    n_train: int | None = None,
    frac_train: float = 0.5,
    validation: Sequence[Case] | None = None,
    objective: str | None = None,
    alternatives: dict[str, list[str]] | None = None,
    kinds: Sequence[str] | None = None,
    segmentation: str = "sentence",
    min_gain: float = 1e-3,
    keep_logprob: bool = True,
    minibatch: int | None = None,
    storage: str | None = None,
    out: str | Path | None = None,
    study_name: str | None = None,
    resume: bool = False,
    join: bool = False,
    join_wait: float = 600.0,
    progress: bool = False,
    max_regressions: int | None = None,
    attribution: Attribution | None = None,
    attribute_after: bool = True,
) -> FixResult:
    """Repair ``template`` on ``cases``: the best meaning-preserving edit found within the budget.

    Cases are split into train and validation with ``split_cases`` (``n_train`` or
    ``frac_train``, shuffled by ``seed``) unless ``validation`` is given. ``storage`` is an
    Optuna storage URL; by default ``sqlite:///<out>/promptlens-fix.db`` when ``out`` is given,
    in memory otherwise. ``resume`` continues the studies stored under ``study_name``.
    ``join``: one of several workers on the same ``storage`` and ``study_name`` (see
    ``search.join_study``); the trial budget is shared, and every worker returns the same best
    template. A worker waits up to ``join_wait`` seconds for the one that set up a round.
    An edit is kept only if undoing it alone would lose significantly on train: more than
    ``min_gain`` nats on average, with a one-sided t lower bound over the train cases above 0
    (``stats.significant``; with fewer than ``stats.MIN_CASES`` train cases nothing is kept); a
    round's result is kept only if its gain over the round's start is significant in the same way, else the round's start is kept. With the margin objective and
    ``keep_logprob``, a template is only kept if it raises the right label's own log-prob on train
    significantly over the round's start without lowering the margin significantly; among those the
    search keeps the best margin. On a few cases a margin moves by chance while a log-prob gain
    carries over, and a wider margin bought by making every label less likely is not a repair a
    user wants; an edit then also stays if it raises the log-prob significantly without lowering
    the margin significantly. ``max_regressions``: no template that turns more than this many train
    cases from right to wrong (``search.flip``) against ``template`` is feasible; the result lists
    the flips on train and validation either way (``FixResult.train_flips``, ``validation_flips``).
    ``strategy``: ``attribution`` edits the ``top_k`` weakest segments, ``random`` ``top_k``
    random ones, ``all`` every segment with each single edit scored first, ``tpe`` every segment
    with Optuna's TPE from the first trial (no prior on where the fault is).
    ``attribution``: an attribution of ``template`` on the train cases made earlier (the same
    ``segmentation``), used instead of attributing again; its forward passes are not counted in
    the result's. ``attribute_after``: attribute the fixed template too (for the report).
    """
    template = as_flat(template)  # a message template: its flat text (promptlens.templates)
    start = time.monotonic()
    check_fix_args(template, list(cases) + list(validation or []), strategy=strategy, threshold=threshold,
                   budget_trials=budget_trials, budget_seconds=budget_seconds, max_regressions=max_regressions)
    deadline = start + budget_seconds if budget_seconds else float("inf")
    if validation is None:
        train, valid = split_cases(cases, n_train=n_train, frac_train=frac_train, seed=seed)
    else:
        train, valid = list(cases), list(validation)
    if backend is None:
        from .backends.hf import load_backend

        backend = load_backend()
    similarity = similarity or Similarity()
    objective = objective or default_objective(train)
    if storage is None and out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{Path(out) / 'promptlens-fix.db'}"
    study_name = study_name or default_study_name(template, cases, strategy, seed)
    if join and storage is None:
        raise InputError("--join shares a study between processes; give --storage (postgresql://... or journal:PATH)")
    where = storage_for(storage)
    config = RewriteConfig(threshold=threshold, edit_floor=edit_floor, alternatives=alternatives or {}, seed=seed,
                           **({"kinds": tuple(kinds)} if kinds else {}))
    passes0 = getattr(backend, "forward_passes", 0)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # its warnings (a Ctrl-C traceback) are not for users

    train_before = summarize(backend, template, train, objective)
    scorer = TemplateScorer(backend, train, objective)
    logprob_rule = keep_logprob and objective == "margin"
    minibatch = minibatch or max(2, len(train) // 2)  # a quarter of 16 cases prunes on noise
    rng = random.Random(seed)
    current, edits, notes = template, [], []
    if len(train) < MIN_CASES:
        notes.append(f"{len(train)} train case(s): a gain needs at least {MIN_CASES} to be shown significant, so no "
                     "edit can be kept; give more cases")
    paraphrase_cache: dict[str, list[str]] = {}
    if attribution is not None and (attribution.text != template or attribution.segmentation != segmentation):
        raise InputError("the attribution given to fix is of another template or segmentation; attribute this "
                         "template first, or give none")
    attr_before = attr = attribution or attribute(template, cases=train, backend=backend, segmentation=segmentation,
                                                   seed=seed)
    notes += [n for n in attr_before.notes if n in render_notes(backend, template)]
    notes += check_notes(check_examples(backend, template, train))  # a doubtful label: reported, never changed
    trials = trials_total = pruned = infeasible = 0
    setup_seconds = 0.0
    bar = _progress(budget_trials, progress)
    study = None  # the study of the round in progress, for the best template so far
    try:
        for r in range(rounds):
            round_start = time.monotonic()
            if r > 0 and deadline - round_start < 1.5 * setup_seconds:
                # A round first attributes and samples rewrites; without time for that and some trials, stop.
                notes.append(f"round {r + 1}: skipped, too little of the time budget left")
                break
            name = f"{study_name}:round{r}"
            if join:
                study, leader = join_study(where, name, seed=seed + r)
            else:
                study, leader = open_study(where, name, seed=seed + r, resume=resume), True
            if not leader:
                # Another worker set this round up: take its starting template and candidates.
                until = min(deadline, time.monotonic() + join_wait)
                current = str(wait_for(study, "start_template", until=until))
                if r == 0 and current != template:
                    raise InputError(f"study {name!r} was started from another template; give every worker the same "
                                     "recipe, or give a new --study")
                wait_for(study, "slots", until=until)
                slots = stored_slots(study, current) or []
                segments = segment(current, segmentation, tokenizer=getattr(backend, "tokenizer", None))
                segments = _with_example_blocks(segments, config.kinds)[0]
            else:
                if r > 0:
                    attr = attribute(current, cases=train, backend=backend, segmentation=segmentation, seed=seed)
                segments, block_of = _with_example_blocks(list(attr.segments), config.kinds)
                slots = stored_slots(study, current) if resume or join else None
                if slots is None:
                    if study.trials:  # a resumed round whose starting template changed: start it afresh
                        study = open_study(where, study.study_name, seed=seed + r, resume=False)
                        notes.append(f"round {r + 1}: the stored study started from another template; started afresh")
                    chosen = list(dict.fromkeys(block_of[i] for i in _choose(attr, strategy, top_k, rng)))
                    slots = []
                    for i in chosen:
                        if slots and time.monotonic() >= deadline:
                            notes.append(f"round {r + 1}: the time budget ran out while generating candidates")
                            break
                        slots.append(Slot(i, tuple(candidates(segments, i, original=template, backend=backend,
                                                              similarity=similarity, cases=train, config=config,
                                                              cache=paraphrase_cache))))
                    # Trial 0 goes in before the slots are published: workers waiting for them
                    # cannot sample a trial ahead of it.
                    enqueue_original(study, [s for s in slots if len(s.rewrites) > 1])
                    if not join and strategy != "tpe":  # then every single edit (within this round's share of the budget)
                        share = -(-(budget_trials - trials_total) // (rounds - r))
                        enqueue_single_edits(study, [s for s in slots if len(s.rewrites) > 1], share - 1)
                    store_slots(study, current, slots)
                else:  # resumed: re-queue trial 0 if a kill cut it off before it finished
                    enqueue_original(study, [s for s in slots if len(s.rewrites) > 1])
            setup_seconds = time.monotonic() - round_start + (attr_before.seconds if r == 0 else 0.0)
            slots = [s for s in slots if len(s.rewrites) > 1]
            if not slots:
                notes.append(f"round {r + 1}: no candidate rewrite passed the similarity and fluency filters")
                break
            # Split what is left of the trial budget evenly over the rounds still to run.
            share = -(-(budget_trials - trials_total) // (rounds - r))  # ceil, so every round gets a trial
            outcome = run_study(
                study, segments, slots, scorer=scorer, similarity=similarity, original=template, threshold=threshold,
                budget=share, deadline=deadline, minibatch=minibatch, shared=join, logprob_baseline=current if logprob_rule else None,
                max_regressions=max_regressions,
                on_trial=lambda s, t: _tick(bar, s, t, deadline),
            )
            if outcome is None:
                notes.append(f"round {r + 1}: the time budget ran out before its first trial; give more seconds")
                break
            trials += outcome.trials_run
            trials_total += outcome.trials_total
            pruned += outcome.pruned
            infeasible += outcome.infeasible
            if leader:
                start_template = current  # simplifying never goes below the round's starting template

                def feasible(t: str, base: str = start_template) -> bool:
                    if max_regressions is not None and scorer.regressions(t, template) > max_regressions:
                        return False
                    return similarity.cosine(template, t) >= threshold and (
                        t == base or _accept(t, base, scorer, min_gain, logprob_rule)
                        or (not logprob_rule and scorer.mean(t) >= scorer.mean(base)))

                choice = _simplify(segments, slots, outcome.best_choice, scorer, min_gain, feasible,
                                   logprob_rule=logprob_rule)
                undone = sum(1 for a, b in zip(outcome.best_choice, choice) if a and not b)
                if undone:
                    notes.append(f"round {r + 1}: undid {undone} edit(s) of the best trial whose gain on train was "
                                 "not significant (one-sided t lower bound at or below 0)")
                if any(choice) and not _accept(template_for(segments, slots, choice), start_template, scorer, min_gain,
                                               logprob_rule):
                    notes.append(f"round {r + 1}: the best template's gain on train was not significant; "
                                 "kept the round's starting template")
                    choice = [0] * len(slots)
                if join:
                    store_result(study, choice)
            else:  # the leader's choice, so that every worker returns the same template
                choice = stored_result(study, until=min(deadline, time.monotonic() + join_wait))
            best = template_for(segments, slots, choice)
            if best != current:
                edits += _edits(r, segments, slots, choice, scorer, logprob=logprob_rule)
            improved = best != current
            current = best
            study = None  # the round is done: its best is `current` now
            if (not improved and strategy == "attribution") or trials_total >= budget_trials or time.monotonic() >= deadline:
                break  # the same template would be attributed the same way: another round finds nothing new
    except KeyboardInterrupt as exc:  # Ctrl-C: every finished trial is already in the storage
        bar.close()
        if study is not None:
            fail_running_trials(study, only_mine=join)
        so_far = best_template(study) if study is not None else None
        raise FixInterrupted(so_far[0] if so_far else current, trials_total + (finished(study) if study else 0),
                             study_name, storage) from exc
    bar.close()
    if logprob_rule:
        notes.append("margin objective: a round's edits were kept only if they raised the right label's log-prob on "
                     "train significantly (one-sided t lower bound above 0) without lowering the margin significantly; "
                     "drop this rule with --allow-logprob-drop")
    attr_after = attr_before if current == template or not attribute_after else attribute(
        current, cases=train, backend=backend, segmentation=segmentation, seed=seed)
    for t in (template, current):
        scorer.mean(t)  # memoised: usually no new forward pass
    rows = {t: [scorer.memo[(t, i)] for i in range(len(train))] for t in (template, current)}
    valid_rows = score_prompts(backend, [[fill(t, c.vars) for c in valid] for t in (template, current)], valid) \
        if valid else None
    return FixResult(
        original=template, best=current, objective=objective, strategy=strategy, threshold=threshold,
        similarity=similarity.cosine(template, current),
        train_before=train_before, train_after=_summary(rows[current], objective),
        validation_before=_summary(valid_rows[0], objective) if valid_rows else None,
        validation_after=_summary(valid_rows[1], objective) if valid_rows else None,
        train_flips=flips(rows[template], rows[current], train, "train"),
        validation_flips=flips(valid_rows[0], valid_rows[1], valid, "validation") if valid_rows else None,
        max_regressions=max_regressions,
        validation_logprob_low=lower_bound([a.logprob - b.logprob for b, a in zip(*valid_rows)]) if valid_rows else None,
        edits=tuple(edits), attribution_before=attr_before, attribution_after=attr_after,
        trials=trials, trials_total=trials_total, pruned=pruned, infeasible=infeasible,
        forward_passes=getattr(backend, "forward_passes", 0) - passes0, seconds=time.monotonic() - start,
        seed=seed, study_name=study_name, storage=storage, notes=tuple(notes), logprob_rule=logprob_rule,
    )


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


def _simplify(segments: Sequence[Segment], slots: Sequence[Slot], choice: Sequence[int], scorer: TemplateScorer,
              min_gain: float, feasible: Callable[[str], bool], *, logprob_rule: bool = False) -> list[int]:
    """Undo, one at a time, the edits that do not pay significantly: the best trial often carries
    passengers, edits that were sampled along with a useful one and add nothing, or whose gain on
    the train cases is luck. An edit stays if undoing it alone loses significantly on train
    (``significant``: mean over ``min_gain``, one-sided t lower bound over 0), or, with
    ``logprob_rule`` (margin objective), if it raises the right label's log-prob significantly
    without lowering the margin. The weakest is undone first; an undo that makes the template
    infeasible (``feasible``: similarity, the round's starting score, the log-prob rule) is skipped."""
    choice = list(choice)
    while any(choice):
        gains = _loo(segments, slots, choice, scorer)
        lp = _loo(segments, slots, choice, scorer, objective="logprob") if logprob_rule else {}
        weak = [k for k, g in gains.items() if not significant(g, min_gain=min_gain)
                and not (k in lp and significant(lp[k], min_gain=min_gain) and not significant([-x for x in g]))]
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


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="fix", unit="trial", disable=not enabled, leave=False)


def _tick(bar: Any, study: optuna.Study, trial: optuna.trial.FrozenTrial, deadline: float) -> None:
    bar.update(1)
    done = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    left = deadline - time.monotonic()
    bar.set_postfix(best=f"{max(done):.3f}" if done else "-", left=f"{left:.0f}s" if left < 1e9 else "∞")
