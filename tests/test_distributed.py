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
