"""Two worker processes on one study in a real PostgreSQL (started by the fixture on loopback):
the shared budget is finished with no trial duplicated and both report the study's best.
Scoring is the fake backend with a small delay, so the test is about the coordination."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import optuna
import pytest

from promptlens.storage import storage_for

pytestmark = pytest.mark.integration

WORKER = """
import json, sys, time
from tests.test_distributed import SlowFake
from tests.test_fix import CASES, TEMPLATE
from promptlens.fix import fix
from promptlens.similarity import JaccardSimilarity
r = fix(TEMPLATE, CASES, backend=SlowFake(), similarity=JaccardSimilarity(), budget_trials=int(sys.argv[2]),
        rounds=1, seed=0, n_train=4, strategy="all", storage=sys.argv[1], study_name=sys.argv[3], join=True)
print(json.dumps({"best": r.best, "trials": r.trials, "total": r.trials_total, "after": r.train_after.objective}))
"""


@pytest.mark.parametrize("n_workers", [2, 3])
def test_workers_share_one_postgres_study(postgres_url, n_workers):
    budget, name = 16, f"pg{n_workers}"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, postgres_url, str(budget), name],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n_workers)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    study = optuna.load_study(study_name=f"{name}:round0", storage=storage_for(postgres_url))
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) == budget == sum(o["trials"] for o in outs)
    assert max(Counter(t.number for t in study.trials).values()) == 1
    assert sum(1 for t in finished if t.system_attrs.get("fixed_params")) == 1  # the original, once
    assert len({o["best"] for o in outs}) == 1 and "banana" not in outs[0]["best"]
    assert len({t.user_attrs["worker"] for t in finished}) > 1  # the work was really shared
