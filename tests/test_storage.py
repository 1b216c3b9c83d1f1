"""promptlens.storage: Optuna storages from a URL, one-line errors for a bad one, opening,
replacing and resuming a study, the shared trial budget, and the attributes a round's leader
publishes. Real Optuna storages (SQLite, the journal file) in a temporary folder."""

from __future__ import annotations

import json
import signal
import time

import optuna
import pytest

from promptlens.errors import InputError
from promptlens.storage import (check_storage, claim, counted, fail_running_trials, finished, join_study, open_study,
                                storage_for, store_result, stored_result, wait_for)

from .helpers import BUDGET, fix_problem, slow_fix, stop_mid_study, stored_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_storage_for_an_rdb_url_a_journal_file_and_none(tmp_path):
    assert storage_for(None) is None  # in memory
    assert isinstance(storage_for(f"sqlite:///{tmp_path / 's.db'}"), optuna.storages.RDBStorage)
    assert (tmp_path / "s.db").is_file()
    assert isinstance(storage_for(f"journal:{tmp_path / 's.log'}"), optuna.storages.JournalStorage)
    with pytest.raises(InputError, match=r"^--storage journal: needs a file path, e.g. journal:out/study.log$"):
        storage_for("journal:")


@pytest.mark.parametrize("url", ["sqlite:////no/such/folder/x.db", "nosuchdb://x", "not a url"])
def test_check_storage_reports_a_bad_url_in_one_line_naming_the_fix(url):
    with pytest.raises(InputError) as info:
        check_storage(url)
    message = str(info.value)
    assert message.startswith(f"cannot open the study storage {url} (") and "\n" not in message
    assert message.endswith("give a URL such as sqlite:///out/promptlens-fix.db whose folder exists")


def _one_trial(study: optuna.Study, value: float) -> None:
    trial = study.ask()
    trial.suggest_categorical("s0", [0, 1])
    study.tell(trial, value)


def test_open_study_replaces_an_old_study_unless_resumed(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = open_study(url, "r:round0", seed=0, resume=False)
    _one_trial(study, 1.0)
    _one_trial(study, 2.0)
    assert len(open_study(url, "r:round0", seed=0, resume=True).trials) == 2  # resumed: kept
    assert open_study(url, "r:round0", seed=0, resume=False).trials == []  # a re-run starts afresh


def test_resume_marks_the_trial_a_kill_cut_off_failed(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = open_study(url, "r:round0", seed=0, resume=False)
    _one_trial(study, 1.0)
    study.ask()  # left RUNNING, as a SIGKILL leaves it
    resumed = open_study(url, "r:round0", seed=0, resume=True)
    assert [t.state.name for t in resumed.trials] == ["COMPLETE", "FAIL"]
    assert finished(resumed) == 1 and len(counted(resumed.trials)) == 1


def test_fail_running_trials_only_mine_leaves_other_workers_trials(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = open_study(url, "r:round0", seed=0, resume=False)
    mine = claim(study, budget=5)
    other = study.ask()
    other.set_user_attr("worker", "another-host:1")
    assert mine is not None and fail_running_trials(study, only_mine=True) == 1
    assert [t.state.name for t in study.trials] == ["FAIL", "RUNNING"]


def test_a_second_worker_without_join_is_stopped_before_it_deletes_the_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = open_study(storage, "busy:round0", seed=0, resume=False)
    study.ask()  # a trial another process is running
    with pytest.raises(InputError, match="add --join"):
        open_study(storage, "busy:round0", seed=0, resume=False)


def test_claim_never_hands_out_more_trials_than_the_budget(tmp_path):
    study = open_study(f"sqlite:///{tmp_path / 's.db'}", "b:round0", seed=0, resume=False)
    first, second = claim(study, budget=2), claim(study, budget=2)
    assert first is not None and second is not None
    assert claim(study, budget=2) is None  # two running trials already fill it
    study.tell(first, 1.0)
    study.tell(second, state=optuna.trial.TrialState.PRUNED)
    assert finished(study) == 2 and claim(study, budget=2) is None
    assert claim(study, budget=3) is not None


def test_join_study_makes_one_leader(tmp_path):
    url = f"journal:{tmp_path / 's.log'}"
    (leader, is_leader), (worker, is_worker_leader) = (join_study(storage_for(url), "j:round0", seed=0),
                                                       join_study(storage_for(url), "j:round0", seed=0))
    assert is_leader and not is_worker_leader and leader.study_name == worker.study_name


def test_the_leaders_result_reaches_a_waiting_worker_and_a_missing_one_is_a_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    leader = open_study(url, "w:round0", seed=0, resume=False)
    worker = optuna.load_study(study_name="w:round0", storage=url)
    with pytest.raises(InputError, match=r"has not set 'result_choice' in time \(did it stop\?\)"):
        stored_result(worker, until=time.monotonic())
    store_result(leader, (0, 2, 1))
    assert stored_result(worker, until=time.monotonic() + 5) == [0, 2, 1]
    leader.set_user_attr("slots", "[]")
    assert wait_for(worker, "slots", until=time.monotonic()) == "[]"


def test_sigkill_mid_study_then_resume_loses_and_repeats_no_trial(tmp_path):
    fix_problem(tmp_path)
    db = tmp_path / "out" / "promptlens-fix.db"
    proc = slow_fix(tmp_path)
    stop_mid_study(proc, db, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = stored_trials(db)
    finished_before = {n: t for n, t in before.items() if t[0] in ("COMPLETE", "PRUNED")}
    assert [t[0] for t in before.values()].count("RUNNING") == 1  # the trial the kill cut off
    assert len(finished_before) >= 4 and not (tmp_path / "out" / "result.json").exists()

    resumed = slow_fix(tmp_path, "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    after = stored_trials(db)
    # every trial finished before the kill is still there, unchanged
    assert {n: after[n] for n in finished_before} == finished_before
    # the cut-off trial is marked failed, not counted and not left running
    states = [t[0] for t in after.values()]
    assert "RUNNING" not in states and states.count("FAIL") == 1
    # the budget counts finished trials: exactly BUDGET, the earlier ones included
    assert states.count("COMPLETE") + states.count("PRUNED") == BUDGET
    result = json.loads((tmp_path / "out" / "result.json").read_text(encoding="utf-8"))
    assert result["trials_total"] == BUDGET and result["trials"] == BUDGET - len(finished_before)
    assert (tmp_path / "out" / "fixed-template.txt").read_text(encoding="utf-8") == result["best"]
    # the original template was scored once (trial 0), not enqueued again by the resumed run
    unchanged = [n for n, t in after.items() if t[0] == "COMPLETE" and not any(t[1].values())]
    assert unchanged == [0]
    print(f"\nkill/resume: {len(finished_before)} trials finished before SIGKILL, 1 cut off, "
          f"{BUDGET - len(finished_before)} more after --resume, {BUDGET} in all (budget {BUDGET})")
