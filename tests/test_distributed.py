"""Several workers on one study (fast tier: threads, a fake backend, Optuna's journal file).
The real thing, two processes on PostgreSQL, is benchmarks/distributed.sh."""

from __future__ import annotations

import threading
import time
from collections import Counter

import optuna
import pytest

from promptlens.errors import InputError
from promptlens.fix import fix
from promptlens.storage import storage_for
from promptlens.similarity import JaccardSimilarity

from .fakes import BANANA_PENALTY, FakeBackend
from .test_fix import CASES, TEMPLATE


class SlowFake(FakeBackend):
    """A scoring call takes a little time, so the workers' trials really interleave."""

    def token_logprobs(self, prompts, targets):
        time.sleep(0.01)
        return super().token_logprobs(prompts, targets)


def workers(n: int, storage: str, budget: int, **kw) -> list:
    results: list = [None] * n
    errors: list = []

    def work(i: int) -> None:
        try:
            results[i] = fix(TEMPLATE, CASES, backend=SlowFake(), similarity=JaccardSimilarity(), budget_trials=budget,
                             rounds=1, seed=0, n_train=4, strategy="all", storage=storage, study_name="shared",
                             join=True, **kw)
        except Exception as exc:  # surfaced below, with the worker's number
            errors.append((i, exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_workers_share_the_budget_without_duplicates(tmp_path, kind):
    storage = f"journal:{tmp_path / 'study.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    a, b = workers(2, storage, budget=10)
    study = optuna.load_study(study_name="shared:round0", storage=storage_for(storage))
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) == 10  # the budget, not 2 x 10
    assert a.trials + b.trials == 10 and a.trials_total == b.trials_total == 10
    numbers = Counter(t.number for t in study.trials)
    assert max(numbers.values()) == 1  # no trial number run twice
    originals = [t for t in study.trials if t.params and not any(t.params.values())
                 and t.system_attrs.get("fixed_params")]
    assert len(originals) == 1 and originals[0].number == 0  # the original was enqueued once
    assert a.best == b.best and "banana" not in a.best  # every worker reports the study's best
    assert a.train_after.objective == pytest.approx(a.train_before.objective + BANANA_PENALTY)


def test_join_needs_a_storage_and_journal_needs_a_path():
    with pytest.raises(InputError, match="give --storage"):
        fix(TEMPLATE, CASES, backend=FakeBackend(), similarity=JaccardSimilarity(), join=True, n_train=4)
    with pytest.raises(InputError, match="needs a file path"):
        storage_for("journal:")


class CountingFake(SlowFake):
    """Records which cases' inputs each worker scored."""

    def scored(self, cases) -> int:
        inputs = [c.vars["input"] for c in cases]
        return sum(1 for p in self.prompts_scored if any(i in p for i in inputs))


def test_followers_take_the_leaders_attribution_and_validation_scores(tmp_path):
    """The run's leader attributes the original, scores validation and decides; the follower runs
    trials and takes the rest from the study: both return the same result."""
    from promptlens.fix import fix_config, train_validation

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    backends = [CountingFake(), CountingFake()]
    results: list = [None, None]

    def work(i: int) -> None:
        results[i] = fix(TEMPLATE, CASES, backend=backends[i], similarity=JaccardSimilarity(), budget_trials=10,
                         rounds=1, seed=0, n_train=4, strategy="all", storage=storage, study_name="handoff", join=True)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = results
    assert a is not None and b is not None
    train, valid = train_validation(CASES, fix_config(n_train=4, seed=0))
    study = optuna.load_study(study_name="handoff:round0", storage=storage_for(storage))
    assert {"inputs", "setup", "final"} <= set(study.user_attrs)
    # Validation: the original and the fixed template, each scored by one worker (two only in a
    # race at the very end), the follower's share while the leader attributes.
    assert 2 * len(valid) <= sum(b.scored(valid) for b in backends) <= 3 * len(valid)
    # The attribution: each worker attributed half the cases (or the leader both, if it finished its
    # half before the follower claimed the other); merged, it is the attribution of every train case.
    from promptlens.attribution import attribute
    alone = attribute(TEMPLATE, cases=train, backend=CountingFake(), segmentation=a.attribution_before.segmentation)
    assert a.attribution_before.features == alone.features and a.attribution_before.n_cases == len(train)
    assert a.best == b.best and a.edits == b.edits
    assert a.attribution_before == b.attribution_before and a.validation_after == b.validation_after
    assert a.train_before == b.train_before and a.validation_flips == b.validation_flips


def test_a_worker_given_other_inputs_is_refused(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    kw = dict(similarity=JaccardSimilarity(), budget_trials=4, rounds=1, n_train=4, strategy="all", storage=storage,
              study_name="mixed", join=True, join_wait=5)
    fix(TEMPLATE, CASES, backend=FakeBackend(), seed=0, **kw)  # leads, and finishes
    backend = CountingFake()
    with pytest.raises(InputError, match=r"other inputs \(seed, train cases, validation cases differ\)"):
        fix(TEMPLATE, CASES, backend=backend, seed=1, **kw)
    assert backend.forward_passes == 0  # refused before scoring anything


def test_report_gives_each_worker_its_trials_and_search_span(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "distributed_report.py"
    spec = importlib.util.spec_from_file_location("distributed_report", path)
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="x:round0", storage=url)
    for worker in ("a", "a", "b"):
        trial = study.ask()
        trial.set_user_attr("worker", worker)
        study.tell(trial, 1.0)
    spans = report.summary(storage_for(url), "x", 3, 1.0)["rounds"]["x:round0"]["worker_spans"]
    assert sorted(spans) == ["a", "b"]
    assert spans["a"].startswith("2 trials, 0.0-") and spans["b"].startswith("1 trials, ")
