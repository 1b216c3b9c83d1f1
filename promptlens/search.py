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
trial's minibatch, and the leave-one-out gains afterwards cost no extra forward passes.

Several workers can share one study (``join_study``; PostgreSQL/MySQL through Optuna's RDB
storage, or ``journal:PATH`` for Optuna's journal file when there is no database server):

* the worker whose ``create_study`` succeeds is the round's leader (creation is atomic in both
  storages): it alone chooses the candidates, enqueues the original as trial 0 and, after the
  budget is spent, decides the round's result; the others wait for these study attributes;
* the trial budget is shared: a worker asks for a trial, and if trials created before it
  (all workers) already fill the budget, it marks it ``over_budget``, fails it and stops, so the
  finished trials never exceed the budget however the workers interleave;
* an enqueued trial is handed to exactly one worker (Optuna moves it from WAITING to RUNNING
  under the storage's lock), and TPE runs with ``constant_liar`` and a per-worker seed, so two
  workers do not propose the same combination at the same moment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import optuna

from .errors import InputError
from .rewrites import Rewrite
from .scoring import Backend, objective_value, score_prompts
from .stats import lower_bound, significant
from .segments import fill, join
from .similarity import SimilarityModel
from .types import Case, Score, Segment

_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
_SIMILARITY = "similarity"
_TEMPLATE = "template"
_OVER_BUDGET = "over_budget"
_RESULT = "result_choice"
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


def _constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    # <= 0 is feasible. A trial that failed before recording its similarity counts as infeasible.
    return [float(trial.user_attrs.get("constraint", 1.0))]


def finished(study: optuna.Study) -> int:
    """Trials that ran to the end (complete or pruned): what the trial budget counts. A trial that
    failed, or that a kill cut off, is not among them."""
    return len(study.get_trials(deepcopy=False, states=_FINISHED))


def fail_running_trials(study: optuna.Study, *, only_mine: bool = False) -> int:
    """Mark failed the trials left RUNNING, so the study neither counts them nor waits for them;
    they run again as new trials. On ``resume`` one process runs the study, so every RUNNING trial
    at its start is one a kill cut off; after Ctrl-C under ``join`` (``only_mine``) the other
    workers' running trials are theirs, and only those this process claimed are touched."""
    me = f"{socket.gethostname()}:{os.getpid()}"
    cut = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
           if not only_mine or t.user_attrs.get("worker") == me]
    for trial in cut:
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    return len(cut)


def _best(trials: Sequence[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    """The complete trial with the highest value; among equals the earliest, so the original wins ties."""
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def best_template(study: optuna.Study) -> tuple[str, float] | None:
    """The template and train objective of the study's best finished trial (earliest among equals)."""
    best = _best(study.get_trials(deepcopy=False))
    return (best.user_attrs[_TEMPLATE], float(best.value)) if best else None


def _storage_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import SQLAlchemyError  # optuna's RDB storage is built on SQLAlchemy

    return ValueError, ImportError, SQLAlchemyError, optuna.exceptions.OptunaError


def check_storage(storage: str) -> None:
    """Open the storage once, so a bad ``--storage`` URL is reported before a model is loaded."""
    try:
        if storage.startswith(("journal:", "postgresql://", "postgres://")):
            storage_for(storage)
        else:  # one plain attempt: storage_for retries, for workers racing to create the tables
            optuna.storages.get_storage(storage)
    except _storage_errors() as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot open the study storage {storage} ({reason}); give a URL such as "
                         "sqlite:///out/promptlens-fix.db whose folder exists") from exc


def storage_for(url: str | None) -> optuna.storages.BaseStorage | None:
    """An Optuna storage for a URL: an RDB URL (``sqlite:///``, ``postgresql://``, ...) or
    ``journal:PATH``, Optuna's journal file (several processes, no database server)."""
    if url is None:
        return None
    if url.startswith("journal:"):
        path = url[len("journal:"):]
        if not path:
            raise InputError("--storage journal: needs a file path, e.g. journal:out/study.log")
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(path))
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+" + _postgres_driver(url) + "://" + url.split("://", 1)[1]
    # SQLite: wait for a lock rather than fail at once when another process writes.
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    import sqlalchemy.exc

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError,
                sqlalchemy.exc.ProgrammingError) as exc:
            # Workers that start together on an empty database race to create its tables:
            # the loser sees the winner's half-made schema. A moment later it is complete.
            if attempt == 4:
                raise InputError(f"cannot open the study database {url.split('@')[-1]}: {exc.orig}; "
                                 "check --storage") from exc
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _postgres_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; use whichever driver is installed."""
    import importlib.util

    for module, dialect in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return dialect
    raise InputError(f"--storage {url.split('@')[-1]} needs a PostgreSQL driver; "
                     "run: pip install 'promptlens[distributed]'")


def _sampler(seed: int, *, shared: bool, n_startup: int) -> optuna.samplers.BaseSampler:
    # Optuna >= 5 reads constraints a trial sets itself; older versions need constraints_func.
    legacy = {} if _NATIVE_CONSTRAINTS else {"constraints_func": _constraints}
    # constant_liar: a running trial (another worker's) counts as a bad result, so TPE does not
    # propose the same combination to two workers at once.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, constant_liar=shared, **legacy)


def _create(storage: str | optuna.storages.BaseStorage | None, name: str, sampler: optuna.samplers.BaseSampler,
            n_startup: int, load_if_exists: bool) -> optuna.Study:
    pruner = optuna.pruners.MedianPruner(n_startup_trials=n_startup, n_warmup_steps=0)
    return optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                               pruner=pruner, load_if_exists=load_if_exists)


def _where(storage: object) -> str:
    return storage if isinstance(storage, str) else type(storage).__name__


def open_study(storage: str | optuna.storages.BaseStorage | None, name: str, *, seed: int, resume: bool,
               n_startup: int = 4) -> optuna.Study:
    """Create (or, with ``resume``, load) the study; without ``resume`` an old study of the same
    name is replaced, so re-running a recipe starts afresh, unless a worker is running trials in
    it right now (then the caller is told about ``join``). A resumed study's cut-off trials are
    marked failed (``fail_running_trials``)."""
    if not resume and storage is not None:
        try:
            old = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            old = None
        if old is not None:
            running = old.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            recent = [t for t in running if t.datetime_start and time.time() - t.datetime_start.timestamp() < 600]
            if recent:
                raise InputError(f"study {name!r} has {len(recent)} trial(s) running in another process; add "
                                 "--join to work on it as one more worker, or give another --study")
            optuna.delete_study(study_name=name, storage=storage)
    try:
        study = _create(storage, name, _sampler(seed, shared=False, n_startup=n_startup), n_startup, resume)
    except _storage_errors() as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"cannot open study {name!r} in {_where(storage)}: {reason}; "
                         "give another --storage or --study") from exc
    if resume:
        fail_running_trials(study)
    return study


def join_study(storage: str | optuna.storages.BaseStorage, name: str, *, seed: int,
               n_startup: int = 4) -> tuple[optuna.Study, bool]:
    """Create the study, or join it when another worker created it first; True for the creator
    (the leader). The leader samples with ``seed``; every other worker with a seed of its own."""
    try:
        return _create(storage, name, _sampler(seed, shared=True, n_startup=n_startup), n_startup, False), True
    except optuna.exceptions.DuplicatedStudyError:
        pass
    except (ValueError, optuna.exceptions.OptunaError) as exc:
        raise InputError(f"cannot open study {name!r} in {_where(storage)}: {exc}; check --storage") from exc
    worker = f"{seed}:{socket.gethostname()}:{os.getpid()}"
    own_seed = int(hashlib.sha256(worker.encode()).hexdigest()[:8], 16)
    return _create(storage, name, _sampler(own_seed, shared=True, n_startup=n_startup), n_startup, True), False


def wait_for(study: optuna.Study, key: str, *, until: float, poll: float = 0.2) -> object:
    """A study attribute another worker (the leader) sets; InputError when it does not come."""
    while True:
        attrs = study.user_attrs
        if key in attrs:
            return attrs[key]
        if time.monotonic() >= until:
            raise InputError(f"study {study.study_name!r}: the worker that created it has not set {key!r} in time "
                             "(did it stop?); start that worker again, or give a new --study")
        time.sleep(poll)


def enqueue_original(study: optuna.Study, slots: Sequence[Slot]) -> None:
    """Trial 0: every slot unchanged, so the original is always scored. Only a study's creator
    calls this, before it publishes the slots, so no worker samples ahead of it; a resumed run
    calls it again, and it enqueues the original only if no trial has scored or holds it (a kill
    may have cut trial 0 off)."""
    unchanged = {s.param: 0 for s in slots}
    if any(t.params == unchanged for t in study.get_trials(deepcopy=False, states=_FINISHED)):
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


def store_result(study: optuna.Study, choice: Sequence[int]) -> None:
    study.set_user_attr(_RESULT, json.dumps(list(choice)))


def stored_result(study: optuna.Study, *, until: float) -> list[int]:
    return [int(c) for c in json.loads(str(wait_for(study, _RESULT, until=until)))]


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


def _counted(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials the budget counts: every one but the failed (cut off by a kill, over the budget)."""
    return [t for t in trials if t.state != optuna.trial.TrialState.FAIL and not t.user_attrs.get(_OVER_BUDGET)]


def _claim(study: optuna.Study, budget: int) -> optuna.Trial | None:
    """A trial within the shared budget, or None when the budget is spent. The budget counts
    every trial of every worker (running ones too) created before this one, so two workers that
    ask at the same moment cannot both take the last place."""
    # Enqueued trials (WAITING) are not in the way: ask() hands them out first.
    if len([t for t in _counted(study.get_trials(deepcopy=False))
            if t.state != optuna.trial.TrialState.WAITING]) >= budget:
        return None
    trial = study.ask()
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    before = [t for t in _counted(study.get_trials(deepcopy=False)) if t._trial_id < trial._trial_id]
    if len(before) >= budget:
        trial.set_user_attr(_OVER_BUDGET, True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return None
    return trial


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
            if not _one_trial(study, objective, budget, on_trial):
                break
            ran += 1
        while shared and time.monotonic() < deadline and any(
                t.state == optuna.trial.TrialState.RUNNING for t in _counted(study.get_trials(deepcopy=False))):
            check_interrupt()
            time.sleep(0.2)
    return _outcome(study, slots, ran, prefer_edits=logprob_baseline is not None)


def _infeasible(trial: optuna.Trial, name: str, excess: float, similarity_gap: float) -> None:
    """Record that ``trial`` breaks constraint ``name`` by ``excess`` (> 0) and prune it unscored."""
    trial.set_user_attr("constraint", max(similarity_gap, excess))
    if _NATIVE_CONSTRAINTS:
        trial.set_constraint(name, excess)
    trial.set_user_attr("infeasible", True)
    raise optuna.TrialPruned()


def _one_trial(study: optuna.Study, objective: Callable[[optuna.Trial], float], budget: int,
               on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None) -> bool:
    """Claim, run and tell one trial; False when the budget is spent."""
    trial = _claim(study, budget)
    if trial is None:
        return False
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        frozen = study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    except ValueError as exc:  # a stored parameter with other choices than this run's
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise InputError(f"study {study.study_name!r} was made with other candidates ({exc}); "
                         "run without --resume or give a new --study name") from exc
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    else:
        frozen = study.tell(trial, value)
    if on_trial:
        on_trial(study, frozen)
    return True


@contextlib.contextmanager
def interrupts(*, deferred: bool = False) -> Iterator[Callable[[], None]]:
    """The one signal handler: a kill (SIGTERM) stops the run like Ctrl-C (SIGINT), with a
    KeyboardInterrupt, so finished trials are kept and the best so far is written.

    ``deferred`` (during a study): a KeyboardInterrupt that lands inside a storage write can leave
    it half done (seen: a hang, a SQLAlchemy traceback, an interrupt swallowed); so the first
    signal only sets a flag, raised by the ``check()`` this yields (called before each trial) and
    on the way out, and a second one stops at once. Off the main thread signals cannot be handled:
    nothing changes there."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    pending: list[int] = []

    def handle(signum: int, frame: object) -> None:
        if pending or not deferred:
            raise KeyboardInterrupt
        pending.append(signum)

    def check() -> None:
        if pending:
            raise KeyboardInterrupt

    signals = (signal.SIGINT, signal.SIGTERM) if deferred else (signal.SIGTERM,)
    old = {sig: signal.getsignal(sig) for sig in signals}
    for sig in old:
        signal.signal(sig, handle)
    try:
        yield check
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    check()  # a signal during the last trial


def _outcome(study: optuna.Study, slots: Sequence[Slot], ran: int, *, prefer_edits: bool = False) -> StudyOutcome | None:
    """``prefer_edits``: the best complete trial that changes something, trial 0 (all unchanged)
    only when no other trial completed (every other was pruned or infeasible)."""
    trials = _counted(study.get_trials(deepcopy=False))
    edited = [t for t in trials if any(t.params.get(s.param, 0) for s in slots)]
    best = (_best(edited) if prefer_edits else None) or _best(trials)
    if best is None:
        return None  # the time budget ran out before the first trial
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    return StudyOutcome(
        best_template=best.user_attrs[_TEMPLATE],
        best_value=float(best.value),
        best_choice=tuple(int(best.params[s.param]) for s in slots),
        trials_run=ran,
        trials_total=len(trials),
        pruned=sum(1 for t in pruned if not t.user_attrs.get("infeasible")),
        infeasible=sum(1 for t in pruned if t.user_attrs.get("infeasible")),
    )
