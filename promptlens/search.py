"""The Optuna study over edits: which candidate rewrite to use for each chosen segment.

One categorical parameter per chosen segment, ``s<index>``, whose choices are candidate indices;
choice 0 is the unchanged segment, and trial 0 is enqueued as all-zeros, so the original template
is always scored and a study can never return something worse than it on train.

Each trial:

1. builds the template and checks the whole-template similarity to the original; a combination
   under the threshold, or one that repeats a sentence the original does not, is infeasible:
   recorded as a trial constraint and pruned without scoring;
2. scores a minibatch of train cases and reports it (step 0), so the pruner can stop a weak
   combination early;
3. scores the rest of train and returns the mean objective (nats, higher is better).

Scores are memoised by (template, case), so a combination the sampler proposes twice, a pruned
trial's minibatch, and the leave-one-out gains afterwards cost no extra forward passes.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import optuna

from .errors import InputError
from .rewrites import Rewrite
from .scoring import Backend, objective_value, score_prompts
from .segments import fill, join
from .similarity import SimilarityModel
from .types import Case, Score, Segment

_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
_SIMILARITY = "similarity"
_TEMPLATE = "template"
_NATIVE_CONSTRAINTS = hasattr(optuna.Trial, "set_constraint")


class TemplateScorer:
    """Mean objective of templates over cases, memoised per (template, case)."""

    def __init__(self, backend: Backend, cases: Sequence[Case], objective: str) -> None:
        self.backend = backend
        self.cases = list(cases)
        self.objective = objective
        self.memo: dict[tuple[str, int], Score] = {}

    def mean(self, template: str, n: int | None = None, *, objective: str | None = None) -> float:
        """Mean objective (this scorer's, or ``objective``) over the first ``n`` cases (all when None)."""
        ids = range(len(self.cases) if n is None else min(n, len(self.cases)))
        missing = [i for i in ids if (template, i) not in self.memo]
        if missing:
            cases = [self.cases[i] for i in missing]
            (row,) = score_prompts(self.backend, [[fill(template, c.vars) for c in cases]], cases)
            self.memo.update(((template, i), score) for i, score in zip(missing, row))
        objective = objective or self.objective
        return sum(objective_value(self.memo[(template, i)], objective) for i in ids) / len(ids)


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


def _constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    # <= 0 is feasible. A trial that failed before recording its similarity counts as infeasible.
    return [float(trial.user_attrs.get("constraint", 1.0))]


def finished(study: optuna.Study) -> int:
    """Trials that ran to the end (complete or pruned): what the trial budget counts. A trial that
    failed, or that a kill cut off, is not among them."""
    return len(study.get_trials(deepcopy=False, states=_FINISHED))


def fail_cut_off_trials(study: optuna.Study) -> int:
    """Mark failed the trials a killed run left RUNNING in the storage, so a resumed study neither
    counts them nor waits for them; they are run again as new trials. One study is run by one
    process at a time, so a RUNNING trial at the start of a run is always a leftover."""
    cut = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in cut:
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    return len(cut)


def best_template(study: optuna.Study) -> tuple[str, float] | None:
    """The template and train objective of the study's best finished trial (earliest among equals)."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        return None
    best = max(done, key=lambda t: (t.value, -t.number))
    return best.user_attrs[_TEMPLATE], float(best.value)


def _storage_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import SQLAlchemyError  # optuna's RDB storage is built on SQLAlchemy

    return ValueError, ImportError, SQLAlchemyError, optuna.exceptions.OptunaError


def check_storage(storage: str) -> None:
    """Open the storage once, so a bad ``--storage`` URL is reported before a model is loaded."""
    try:
        optuna.storages.get_storage(storage)
    except _storage_errors() as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot open the study storage {storage} ({reason}); give a URL such as "
                         "sqlite:///out/promptlens-fix.db whose folder exists") from exc


def open_study(storage: str | None, name: str, *, seed: int, resume: bool, n_startup: int = 4) -> optuna.Study:
    """Create (or, with ``resume``, load) the study; without ``resume`` an old study of the same
    name is replaced, so re-running a recipe starts afresh. A resumed study's cut-off trials are
    marked failed (``fail_cut_off_trials``)."""
    if not resume and storage is not None:
        try:
            optuna.delete_study(study_name=name, storage=storage)
        except KeyError:
            pass
    # Optuna >= 5 reads constraints a trial sets itself; older versions need constraints_func.
    legacy = {} if _NATIVE_CONSTRAINTS else {"constraints_func": _constraints}
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, **legacy)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=n_startup, n_warmup_steps=0)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                    pruner=pruner, load_if_exists=resume)
    except _storage_errors() as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"cannot open study {name!r} in {storage}: {reason}; give another --storage or --study") from exc
    if resume:
        fail_cut_off_trials(study)
    return study


def stored_slots(study: optuna.Study, start: str) -> list[Slot] | None:
    """The candidates an earlier run of this study used, if it started from the same template."""
    attrs = study.user_attrs
    if attrs.get("start_template") != start or "slots" not in attrs:
        return None
    return [Slot(s["segment_index"], tuple(Rewrite(**r) for r in s["rewrites"])) for s in json.loads(attrs["slots"])]


def store_slots(study: optuna.Study, start: str, slots: Sequence[Slot]) -> None:
    data = [{"segment_index": s.segment_index, "rewrites": [r.__dict__ for r in s.rewrites]} for s in slots]
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
    n_trials: int,
    deadline: float,
    minibatch: int,
    logprob_floor: float | None = None,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> StudyOutcome | None:
    """Run up to ``n_trials`` more trials (or until ``time.monotonic() >= deadline``); None when
    no trial finished. With ``logprob_floor``, a combination whose mean target log-prob on train
    falls below it is infeasible: a margin can rise while the wanted label itself gets less likely."""
    before = finished(study)
    unchanged = {s.param: 0 for s in slots}
    # Trial 0 scores the round's start; enqueue it again if a kill cut it off before it finished.
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    if not any(t.params == unchanged for t in study.get_trials(deepcopy=False, states=_FINISHED)) and \
            not any(t.system_attrs.get("fixed_params") == unchanged for t in waiting):
        study.enqueue_trial(unchanged)

    def objective(trial: optuna.Trial) -> float:
        choice = [trial.suggest_categorical(s.param, list(range(len(s.rewrites)))) for s in slots]
        template = template_for(segments, slots, choice)
        sim = similarity.cosine(original, template)
        trial.set_user_attr(_SIMILARITY, sim)
        trial.set_user_attr("constraint", threshold - sim)
        if _NATIVE_CONSTRAINTS:
            trial.set_constraint(_SIMILARITY, threshold - sim)
        trial.set_user_attr(_TEMPLATE, template)
        if sim < threshold or repeats(template) > repeats(original):
            trial.set_user_attr("infeasible", True)
            raise optuna.TrialPruned()
        trial.report(scorer.mean(template, minibatch), 0)
        if trial.should_prune():
            raise optuna.TrialPruned()
        value = scorer.mean(template)
        if logprob_floor is not None:
            drop = logprob_floor - scorer.mean(template, objective="logprob")
            trial.set_user_attr("logprob_drop", drop)
            if drop > 0:
                trial.set_user_attr("constraint", max(threshold - sim, drop))
                if _NATIVE_CONSTRAINTS:
                    trial.set_constraint("logprob", drop)
                trial.set_user_attr("infeasible", True)
                raise optuna.TrialPruned()
        return value

    callbacks = [on_trial] if on_trial else []
    timeout = max(0.0, deadline - time.monotonic())
    if n_trials > 0 and timeout > 0:
        try:
            study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=callbacks)
        except ValueError as exc:  # a stored parameter with other choices than this run's
            raise InputError(f"study {study.study_name!r} was made with other candidates ({exc}); "
                             "run without --resume or give a new --study name") from exc
    return _outcome(study, slots, before)


def _outcome(study: optuna.Study, slots: Sequence[Slot], before: int) -> StudyOutcome | None:
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return None  # the time budget ran out before the first trial
    # Highest value; among equals the earliest trial, so the original wins ties.
    best = max(done, key=lambda t: (t.value, -t.number))
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    return StudyOutcome(
        best_template=best.user_attrs[_TEMPLATE],
        best_value=float(best.value),
        best_choice=tuple(int(best.params[s.param]) for s in slots),
        trials_run=finished(study) - before,
        trials_total=finished(study),
        pruned=sum(1 for t in pruned if not t.user_attrs.get("infeasible")),
        infeasible=sum(1 for t in pruned if t.user_attrs.get("infeasible")),
    )
