"""Shared by the tests that run the command line on files in a folder: a good cases file and
recipe, writing a files table, calling ``main`` as the shell would, and a ``promptlens fix`` in a
child process on the fake backend (tests/slow_fix.py) that can be stopped mid-study."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptlens.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "promptlens" / "examples"

GOOD_JSONL = '{"input": "cat", "target": "cats"}\n{"input": "dog", "target": "dogs"}\n'
RECIPE = "template: 'Plural of {input}:'\ncases: c.jsonl\n"
NET_FILES = {  # a small fix and lint problem for the real-model runs
    "t.txt": "Give the plural of the word. Answer in French. Word: {input}\nPlural:",
    "c.jsonl": "".join(json.dumps({"input": w, "target": p}) + "\n"
                       for w, p in [("cat", "cats"), ("dog", "dogs"), ("box", "boxes"), ("car", "cars")]),
    "r.yaml": "template_file: t.txt\ncases: c.jsonl\nbudget: {trials: 3}\nrounds: 1\nrewrites: [delete]\ntop_k: 2\n",
}


def write_files(folder: Path, files: dict[str, str | bytes | None]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def run_main(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code)


FIX_TEMPLATE = ("You are a careful assistant. Read the question below and answer it with a single word. "
                "Eat a banana. Question: {input}\nAnswer:")
FIX_TARGETS = ["yes", "no", "maybe so", "yes", "no", "blue sky", "red", "green"]
BUDGET = 16


def fix_problem(folder: Path) -> None:
    """A recipe whose study has more combinations than the budget (strategy all, one round)."""
    (folder / "t.txt").write_text(FIX_TEMPLATE, encoding="utf-8")
    (folder / "c.jsonl").write_text("".join(json.dumps({"vars": {"input": f"question number {i}?"}, "target": t}) + "\n"
                                            for i, t in enumerate(FIX_TARGETS)), encoding="utf-8")
    (folder / "r.yaml").write_text(f"template_file: t.txt\ncases: c.jsonl\nbudget: {{trials: {BUDGET}}}\n"
                                   "rounds: 1\nstrategy: all\nseed: 0\n", encoding="utf-8")


def slow_fix(folder: Path, *args: str) -> subprocess.Popen:
    """``promptlens fix`` (fake backend, 0.15 s per trial: see tests/slow_fix.py) in a child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PROMPTLENS_TEST_TRIAL_DELAY": "0.15"}
    return subprocess.Popen([sys.executable, "-m", "tests.slow_fix", "fix", "r.yaml", "--threads", "1", "--out", "out",
                             "--json", "out/result.json", *args], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def trial_states(db: Path) -> list[tuple[int, str]]:
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    except sqlite3.OperationalError:  # the tables are not made yet, or the file is locked
        return []


def stop_mid_study(proc: subprocess.Popen, db: Path, sig: int, at_least: int = 4) -> None:
    """Send ``sig`` once ``at_least`` trials are complete and the next one is running."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = [s for _, s in trial_states(db)]
        if states.count("COMPLETE") >= at_least and "RUNNING" in states:
            proc.send_signal(sig)
            return
        assert proc.poll() is None, f"fix ended before it could be stopped: {proc.communicate()[1][-2000:]}"
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no trial was running after 120 s")


def stored_trials(db: Path) -> dict[int, tuple[str, dict, float | None]]:
    import optuna

    storage = f"sqlite:///{db}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    return {t.number: (t.state.name, t.params, t.value) for t in study.trials}
