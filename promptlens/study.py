"""The Optuna study over edits: which candidate rewrite to use for each chosen segment.

One categorical parameter per chosen segment, ``s<index>``, whose choices are candidate indices;
choice 0 is the unchanged segment, and trial 0 is enqueued as all-zeros, so the original template
is always scored and a study can never return something worse than it on train (with
``logprob_baseline``: worse in the log-prob; see ``run_study``).

Each trial:

1. builds the template and checks the whole-template similarity to the original; a combination
   under the threshold, or one that repeats a sentence the original does not, is infeasible:
   recorded as a trial constraint and pruned without scoring;
2. scores a minibatch of train cases and reports it (step 0), so the pruner can stop a weak
   combination early;
3. scores the rest of train and returns the mean objective (nats, higher is better).

Scores are memoised by (template, case), so a combination the sampler proposes twice, a pruned
trial's minibatch, and the leave-one-out gains afterwards cost no extra forward passes; under
``fix --join`` the memo is also shared through the study (``handoff.SharedScores``), so neither
do combinations another worker scored.

Where the study is stored, and how several workers share it, is in ``storage``.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import optuna

from .errors import InputError
from .handoff import SharedScores, digest
from .rewrites import Rewrite
from .scoring import Backend, kept_prefixes, objective_value, score_prompts
from .segments import fill, join
from .signals import interrupts
from .similarity import SimilarityModel
from .stats import lower_bound, significant
from .storage import FINISHED, NATIVE_CONSTRAINTS, claim, counted
from .types import Case, Score, Segment

_SIMILARITY = "similarity"
_TEMPLATE = "template"


class BudgetSpent(Exception):
    """A scoring request that what is left of ``fix``'s budget of prompts scored cannot pay for in
    full; nothing of it was scored (``fix.PromptCounter``)."""


class TemplateScorer:
    """Mean objective of templates over cases, memoised per (template, case); with ``shared``, the
    memo is also read from and written to a study that other workers share."""

    def __init__(self, backend: Backend, cases: Sequence[Case], objective: str,
                 shared: SharedScores | None = None) -> None:
        self.backend = backend
        self.cases = list(cases)
        self.objective = objective
        self.memo: dict[tuple[str, int], Score] = {}
        self.shared = shared

    def mean(self, template: str, n: int | None = None, *, objective: str | None = None) -> float:
        """Mean objective (this scorer's, or ``objective``) over the first ``n`` cases (all when None)."""
        ids = range(len(self.cases) if n is None else min(n, len(self.cases)))
        missing = [i for i in ids if (template, i) not in self.memo]
        if missing and self.shared is not None:
            theirs = self.shared.get(template)
            found = [i for i in missing if i in theirs]
            self.memo.update(((template, i), theirs[i]) for i in found)
            self.shared.taken += len(found)
            missing = [i for i in missing if i not in theirs]
        if missing:
            cases = [self.cases[i] for i in missing]
            (row,) = score_prompts(self.backend, [[fill(template, c.vars) for c in cases]], cases)
            self.memo.update(((template, i), score) for i, score in zip(missing, row))
            if self.shared is not None:
                self.shared.put(template, {i: self.memo[(template, i)] for i in range(len(self.cases))
                                           if (template, i) in self.memo})
        objective = objective or self.objective
        return sum(objective_value(self.memo[(template, i)], objective) for i in ids) / len(ids)

    def gains(self, template: str, baseline: str, *, objective: str | None = None) -> list[float]:
        """Per train case: ``template``'s objective (this scorer's, or ``objective``) minus ``baseline``'s."""
        self.mean(template)
        self.mean(baseline)
        objective = objective or self.objective
        return [objective_value(self.memo[(template, i)], objective) - objective_value(self.memo[(baseline, i)], objective)
                for i in range(len(self.cases))]

    def regressions(self, template: str, baseline: str) -> int:
        """Train cases right under ``baseline`` and wrong under ``template`` (``flip``)."""
        self.mean(template)
        self.mean(baseline)
        return sum(1 for i in range(len(self.cases)) if flip(self.memo[(baseline, i)], self.memo[(template, i)]) < 0)


REGRESSION_NATS = math.log(2)  # a target token above this log-prob (p > 1/2) is the greedy choice


def right(score: Score) -> bool:
    """Whether a case is answered right: on a choice case the right label scores best; on a
    free-form target every target token has probability above 1/2, so greedy decoding is sure to
    produce the target (a sufficient condition that needs no generation)."""
    if score.correct is not None:
        return score.correct
    return all(t > -REGRESSION_NATS for t in score.token_logprobs)


def flip(before: Score, after: Score) -> int:
    """-1 if a case was right before and is wrong after (``right``), +1 for the reverse, else 0."""
    return int(right(after)) - int(right(before))


@dataclass(frozen=True)
class Slot:
    """The candidates for one segment; ``rewrites[0]`` keeps the segment as it is."""

    segment_index: int
    rewrites: tuple[Rewrite, ...]

    @property
    def param(self) -> str:
        return f"s{self.segment_index}"


@dataclass(frozen=True)
class StudyOutcome:
    best_template: str
    best_value: float
    best_choice: tuple[int, ...]  # candidate index per slot
    trials_run: int  # in this call
    trials_total: int  # in the study, earlier runs included
    pruned: int
    infeasible: int


def template_for(segments: Sequence[Segment], slots: Sequence[Slot], choice: Sequence[int]) -> str:
    return join(segments, {s.segment_index: s.rewrites[c].text for s, c in zip(slots, choice) if c})


def repeats(template: str) -> int:
    """How many sentences occur more than once: two slots adding the same scaffold ("Answer with
    one of: ...") to two sentences say one thing twice, which no similarity score catches."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?:])\s+", template) if len(s.strip()) > 3]
    return len(sentences) - len(set(sentences))


def _best(trials: Sequence[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    """The complete trial with the highest value; among equals the earliest, so the original wins ties."""
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def _value(trial: optuna.trial.FrozenTrial) -> float:
    """A complete trial's objective (every complete trial of a single-objective study has one)."""
    if trial.value is None:
        raise ValueError(f"trial {trial.number} is complete but has no value")
    return float(trial.value)


def ranked_choices(study: optuna.Study, slots: Sequence[Slot]) -> list[tuple[int, ...]]:
    """The choices of the study's complete trials, best first (earliest among equals), each once."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    done.sort(key=lambda t: (-_value(t), t.number))
    return list(dict.fromkeys(tuple(int(t.params.get(s.param, 0)) for s in slots) for t in done))


def best_template(study: optuna.Study) -> tuple[str, float] | None:
    """The template and train objective of the study's best finished trial (earliest among equals)."""
    best = _best(study.get_trials(deepcopy=False))
    return (best.user_attrs[_TEMPLATE], _value(best)) if best else None


def enqueue_original(study: optuna.Study, slots: Sequence[Slot]) -> None:
    """Trial 0: every slot unchanged, so the original is always scored. Only a study's creator
    calls this, before it publishes the slots, so no worker samples ahead of it; a resumed run
    calls it again, and it enqueues the original only if no trial has scored or holds it (a kill
    may have cut trial 0 off)."""
    unchanged = {s.param: 0 for s in slots}
    if any(t.params == unchanged for t in study.get_trials(deepcopy=False, states=FINISHED)):
        return
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    if not any(t.system_attrs.get("fixed_params") == unchanged for t in waiting):
        study.enqueue_trial(unchanged)


def enqueue_single_edits(study: optuna.Study, slots: Sequence[Slot], limit: int) -> int:
    """After trial 0, up to ``limit`` trials that each make one edit: the first candidate of every
    slot, then the second of every slot, and so on. Every candidate is then scored on its own at
    least once (when the budget allows) before TPE combines them: with a small budget and many
    infeasible combinations, TPE alone can spend most trials re-proposing the original. Only a
    study that one process runs (not under ``join``) gets them, with trial 0."""
    unchanged = {s.param: 0 for s in slots}
    singles = [{**unchanged, s.param: c} for c in range(1, max((len(s.rewrites) for s in slots), default=1))
               for s in slots if c < len(s.rewrites)]
    for params in singles[:max(0, limit)]:
        study.enqueue_trial(params)
    return min(len(singles), max(0, limit))


def layout(segments: Sequence[Segment]) -> str:
    """A fingerprint of how a template is cut into segments: a slot's ``segment_index`` means the
    same segment only under the same layout (segmentation and example blocks)."""
    return digest([(s.text, s.kind) for s in segments])


def stored_slots(study: optuna.Study, start: str, segments: Sequence[Segment] | None = None) -> list[Slot] | None:
    """The candidates an earlier run of this study used, if it started from the same template and
    (given ``segments``) cut it into the same segments; a study stored before layouts were
    recorded is taken as it is."""
    attrs = study.user_attrs
    if attrs.get("start_template") != start or "slots" not in attrs:
        return None
    if segments is not None and attrs.get("layout", layout(segments)) != layout(segments):
        return None
    return [Slot(s["segment_index"], tuple(Rewrite(**r) for r in s["rewrites"])) for s in json.loads(attrs["slots"])]


def store_slots(study: optuna.Study, start: str, slots: Sequence[Slot], segments: Sequence[Segment] | None = None) -> None:
    data = [{"segment_index": s.segment_index, "rewrites": [r.__dict__ for r in s.rewrites]} for s in slots]
    if segments is not None:  # before the slots: a worker waiting for them reads the layout next
        study.set_user_attr("layout", layout(segments))
    study.set_user_attr("start_template", start)
    study.set_user_attr("slots", json.dumps(data))


def run_study(
    study: optuna.Study,
    segments: Sequence[Segment],
    slots: Sequence[Slot],
    *,
    scorer: TemplateScorer,
    similarity: SimilarityModel,
    original: str,
    threshold: float,
    budget: int,
    deadline: float,
    minibatch: int,
    shared: bool = False,
    logprob_baseline: str | None = None,
    max_regressions: int | None = None,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> StudyOutcome | None:
    """Run trials until the study holds ``budget`` of them (all workers together, earlier runs
    included), ``time.monotonic() >= deadline`` or ``stop()`` is true before a trial (``fix``'s
    forward-pass budget); None when no trial finished. ``shared``:
    other workers may be running trials, so wait (until the deadline) for them to finish before
    reading the result, so that every worker reads the same study. With ``logprob_baseline`` (a
    template: the round's start, which is trial 0), a combination other than trial 0 is feasible
    only if it raises the target log-prob on train significantly over it (``stats.significant``: a
    positive mean whose one-sided t lower bound over the cases is above 0) and does not lower the
    objective (the margin) significantly; the feasible combination with the best margin is the
    result, trial 0 only when there is none. A margin can rise while the wanted label itself gets
    less likely, and on a few cases a margin moves by chance by tenths of a nat either way; a
    log-prob gain carries over to unseen cases (benchmarks/fix_generalization.py).
    ``max_regressions``: a combination that turns more than this many train cases from right
    under ``original`` to wrong (``flip``) is infeasible, however high its mean."""

    def objective(trial: optuna.Trial) -> float:
        choice = [trial.suggest_categorical(s.param, list(range(len(s.rewrites)))) for s in slots]
        template = template_for(segments, slots, choice)
        sim = similarity.cosine(original, template)
        trial.set_user_attr(_SIMILARITY, sim)
        trial.set_user_attr("constraint", threshold - sim)
        if NATIVE_CONSTRAINTS:
            trial.set_constraint(_SIMILARITY, threshold - sim)
        trial.set_user_attr(_TEMPLATE, template)
        if sim < threshold or repeats(template) > repeats(original):
            trial.set_user_attr("infeasible", True)
            raise optuna.TrialPruned()
        try:
            trial.report(scorer.mean(template, minibatch), 0)
            if trial.should_prune():
                raise optuna.TrialPruned()
            value = scorer.mean(template)
        except BudgetSpent:  # the budget cannot score this trial in full: it is the last (``stop``)
            trial.set_user_attr("budget_spent", True)
            raise optuna.TrialPruned() from None
        if max_regressions is not None:
            lost = scorer.regressions(template, original)
            trial.set_user_attr("regressions", lost)
            if lost > max_regressions:
                _infeasible(trial, "regressions", float(lost - max_regressions), threshold - sim)  # by this many cases
        if logprob_baseline is not None and template != logprob_baseline:
            gains = scorer.gains(template, logprob_baseline, objective="logprob")
            low = lower_bound(gains)
            trial.set_user_attr("logprob_gain", sum(gains) / len(gains))
            trial.set_user_attr("logprob_gain_low", low)
            if not significant(gains) or significant([-g for g in scorer.gains(template, logprob_baseline)]):
                _infeasible(trial, "logprob", max(-low, 1e-6), threshold - sim)  # > 0: infeasible by this much
        return value

    ran = 0
    with interrupts(deferred=True) as check_interrupt:
        while time.monotonic() < deadline and not (stop is not None and stop()):
            check_interrupt()
            outcome = _one_trial(study, objective, budget, on_trial)
            if outcome is None:
                break
            ran += outcome
        while shared and time.monotonic() < deadline and any(
                t.state == optuna.trial.TrialState.RUNNING for t in counted(study.get_trials(deepcopy=False))):
            check_interrupt()
            time.sleep(0.2)
    return _outcome(study, slots, ran, prefer_edits=logprob_baseline is not None)


def _infeasible(trial: optuna.Trial, name: str, excess: float, similarity_gap: float) -> None:
    """Record that ``trial`` breaks constraint ``name`` by ``excess`` (> 0) and prune it unscored."""
    trial.set_user_attr("constraint", max(similarity_gap, excess))
    if NATIVE_CONSTRAINTS:
        trial.set_constraint(name, excess)
    trial.set_user_attr("infeasible", True)
    raise optuna.TrialPruned()


def _one_trial(study: optuna.Study, objective: Callable[[optuna.Trial], float], budget: int,
               on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None) -> bool | None:
    """Claim, run and tell one trial: True when this worker ran it, False when another worker
    finished the same trial first, None when the budget is spent."""
    trial = claim(study, budget)
    if trial is None:
        return None
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        frozen = _tell(study, trial, state=optuna.trial.TrialState.PRUNED)
    except ValueError as exc:  # a stored parameter with other choices than this run's
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise InputError(f"study {study.study_name!r} was made with other candidates ({exc}); "
                         "run without --resume or give a new --study name") from exc
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    else:
        frozen = _tell(study, trial, value)
    if frozen is None:
        return False
    if on_trial:
        on_trial(study, frozen)
    return True


def _tell(study: optuna.Study, trial: optuna.Trial, value: float | None = None,
          state: optuna.trial.TrialState | None = None) -> optuna.trial.FrozenTrial | None:
    """Tell a trial, or None when another worker already told it. SQLite has no row locks, so two
    workers can pop the same enqueued trial at once (optuna's pop relies on SELECT ... FOR UPDATE);
    both compute the same value, and the second tell finds the trial finished."""
    try:
        return study.tell(trial, value, state=state)
    except ValueError:
        stored = study._storage.get_trial(trial._trial_id)
        if stored.state.is_finished():
            return None
        raise


def _outcome(study: optuna.Study, slots: Sequence[Slot], ran: int, *, prefer_edits: bool = False) -> StudyOutcome | None:
    """``prefer_edits``: the best complete trial that changes something, trial 0 (all unchanged)
    only when no other trial completed (every other was pruned or infeasible)."""
    trials = counted(study.get_trials(deepcopy=False))
    edited = [t for t in trials if any(t.params.get(s.param, 0) for s in slots)]
    best = (_best(edited) if prefer_edits else None) or _best(trials)
    if best is None:
        return None  # the time budget ran out before the first trial
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    return StudyOutcome(
        best_template=best.user_attrs[_TEMPLATE],
        best_value=_value(best),
        best_choice=tuple(int(best.params[s.param]) for s in slots),
        trials_run=ran,
        trials_total=len(trials),
        pruned=sum(1 for t in pruned if not t.user_attrs.get("infeasible")),
        infeasible=sum(1 for t in pruned if t.user_attrs.get("infeasible")),
    )
