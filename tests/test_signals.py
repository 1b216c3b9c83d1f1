"""promptlens.signals: Ctrl-C (SIGINT) and a kill (SIGTERM) stop a repair between trials, keep
every finished trial and the best template so far, and say how to resume (a real ``promptlens
fix`` in a child process on the fake backend)."""

from __future__ import annotations

import re
import signal

import pytest

from .helpers import fix_problem, slow_fix, stop_mid_study, stored_trials

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_interrupt_keeps_the_trials_and_the_best_so_far_and_says_how_to_resume(tmp_path, sig):
    fix_problem(tmp_path)
    db = tmp_path / "out" / "promptlens-fix.db"
    proc = slow_fix(tmp_path)
    stop_mid_study(proc, db, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("promptlens:")]
    assert re.fullmatch(r"promptlens: interrupted; \d+ finished trials are kept in sqlite:///out/promptlens-fix.db "
                        r"\(study fix-\w+\) and the best template so far is in out/best-so-far.txt; "
                        r"run the same command with --resume to continue", line), line
    trials = stored_trials(db)
    states = [t[0] for t in trials.values()]
    assert "RUNNING" not in states  # Optuna marked the interrupted trial failed itself
    kept = int(re.search(r"(\d+) finished", line).group(1))
    assert kept == states.count("COMPLETE") + states.count("PRUNED") >= 4
    import optuna

    from promptlens.study import best_template

    study = optuna.load_study(study_name=optuna.get_all_study_summaries(f"sqlite:///{db}")[0].study_name,
                              storage=f"sqlite:///{db}")
    template, value = best_template(study)
    assert (tmp_path / "out" / "best-so-far.txt").read_text(encoding="utf-8") == template
    assert value == max(t[2] for t in trials.values() if t[0] == "COMPLETE")
