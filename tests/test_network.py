"""No network at run time: every command on the real models in a process where any connection
or name lookup outside loopback fails and is reported (tests/netguard.py), and the guard itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .helpers import EXAMPLE, NET_FILES, ROOT, write_files

NETWORK_RUNS = {
    "attribute": ([str(EXAMPLE / "sports.txt"), "--cases", str(EXAMPLE / "sports.jsonl"), "--limit", "2"], (0,)),
    "fix": (["r.yaml", "--out", "out", "--json", "out/result.json"], (0,)),  # loads the embedding model too
    "lint": (["t.txt", "--cases", "c.jsonl", "--no-cache"], (0, 1)),  # 1: findings
    # every level, so the embedding model and the model's own paraphrases run too
    "bench": (["--template", "t.txt", "--cases", "c.jsonl", "--budget", "1", "--limit", "2", "--out", "b"], (0,)),
}


@pytest.mark.model
@pytest.mark.parametrize("command", list(NETWORK_RUNS))
def test_no_network_connection_at_run_time(command, tmp_path):
    """Each command on the real models, in a process where any network attempt outside loopback
    (connect or name lookup) fails and is reported; HF_HUB_OFFLINE is unset: promptlens must stay
    offline on its own."""
    write_files(tmp_path, NET_FILES)
    args, ok = NETWORK_RUNS[command]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.pop(var, None)
    result = subprocess.run([sys.executable, "-m", "tests.netguard", command, *args, "--threads", "1"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert "NETWORK ATTEMPT" not in result.stderr, result.stderr[-3000:]
    assert result.returncode in ok, result.stderr[-3000:]


def test_the_network_guard_catches_an_attempt():
    """The guard itself works: a lookup and a connection to a public address are refused and reported."""
    code = ("import socket, tests.netguard as g; g.install()\n"
            "for f in (lambda: socket.getaddrinfo('example.com', 443), "
            "lambda: socket.create_connection(('93.184.216.34', 443), timeout=1)):\n"
            "    try: f()\n"
            "    except OSError as e: print('refused', e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert result.stdout.count("refused network blocked by the test") == 2, result
    assert result.stderr.count("NETWORK ATTEMPT") == 2
