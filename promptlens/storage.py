"""Where a study lives and how several workers share it: Optuna storages (an RDB URL such as
``sqlite:///``/``postgresql://``, or ``journal:PATH`` for Optuna's journal file when there is no
database server), opening, resuming and joining a study, the attributes the leader publishes,
and the shared trial budget.

Several workers can share one study (``join_study``):

* the worker whose ``create_study`` succeeds is the round's leader (creation is atomic in both
  storages): it alone chooses the candidates, enqueues the original as trial 0 and, after the
  budget is spent, decides the round's result; the others wait for these study attributes
  (``wait_for``);
* the trial budget is shared: a worker asks for a trial (``claim``), and if trials created before
  it (all workers) already fill the budget, it marks it ``over_budget``, fails it and stops, so
  the finished trials never exceed the budget however the workers interleave;
* an enqueued trial is handed to exactly one worker (Optuna moves it from WAITING to RUNNING
  under the storage's lock), and TPE runs with ``constant_liar`` and a per-worker seed, so two
  workers do not propose the same combination at the same moment.

What the trials mean (the objective, feasibility, which trial is the result) is in ``study``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from typing import Any, Sequence

import optuna

from .errors import InputError

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
_OVER_BUDGET = "over_budget"
_RESULT = "result_choice"
NATIVE_CONSTRAINTS = hasattr(optuna.Trial, "set_constraint")


def _constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    # <= 0 is feasible. A trial that failed before recording its similarity counts as infeasible.
    return [float(trial.user_attrs.get("constraint", 1.0))]


def finished(study: optuna.Study) -> int:
    """Trials that ran to the end (complete or pruned): what the trial budget counts. A trial that
    failed, or that a kill cut off, is not among them."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


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
    legacy: dict[str, Any] = {} if NATIVE_CONSTRAINTS else {"constraints_func": _constraints}
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


def poll_attr(study: optuna.Study, key: str, *, until: float, poll: float = 0.2) -> object | None:
    """A study attribute another worker sets, waiting until ``time.monotonic() >= until``; None
    when it did not come."""
    while True:
        attrs = study.user_attrs
        if key in attrs:
            return attrs[key]
        if time.monotonic() >= until:
            return None
        time.sleep(poll)


def wait_for(study: optuna.Study, key: str, *, until: float, poll: float = 0.2) -> object:
    """A study attribute another worker (the leader) sets; InputError when it does not come."""
    value = poll_attr(study, key, until=until, poll=poll)
    if value is None:
        raise InputError(f"study {study.study_name!r}: the worker that created it has not set {key!r} in time "
                         "(did it stop?); start that worker again, or give a new --study")
    return value


def store_result(study: optuna.Study, choice: Sequence[int]) -> None:
    study.set_user_attr(_RESULT, json.dumps(list(choice)))


def stored_result(study: optuna.Study, *, until: float) -> list[int]:
    return [int(c) for c in json.loads(str(wait_for(study, _RESULT, until=until)))]


def counted(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials the budget counts: every one but the failed (cut off by a kill, over the budget)."""
    return [t for t in trials if t.state != optuna.trial.TrialState.FAIL and not t.user_attrs.get(_OVER_BUDGET)]


def claim(study: optuna.Study, budget: int) -> optuna.Trial | None:
    """A trial within the shared budget, or None when the budget is spent. The budget counts
    every trial of every worker (running ones too) created before this one, so two workers that
    ask at the same moment cannot both take the last place."""
    # Enqueued trials (WAITING) are not in the way: ask() hands them out first.
    if len([t for t in counted(study.get_trials(deepcopy=False))
            if t.state != optuna.trial.TrialState.WAITING]) >= budget:
        return None
    trial = study.ask()
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    before = [t for t in counted(study.get_trials(deepcopy=False)) if t._trial_id < trial._trial_id]
    if len(before) >= budget:
        trial.set_user_attr(_OVER_BUDGET, True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return None
    return trial
