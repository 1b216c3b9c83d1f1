"""The integration tier: real servers started and stopped by the tests (make test-integration)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(*extra: str, timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """llama-cpp-python's OpenAI-compatible server on the embedded SmolLM2 GGUF, on loopback."""
    python = os.environ.get("PROMPTLENS_LLAMA_SERVER_PYTHON")
    if not python or not Path(python).is_file():
        pytest.skip("set PROMPTLENS_LLAMA_SERVER_PYTHON to a python with llama-cpp-python[server] "
                    "(make test-integration builds one)")
    from promptlens.backends.hf import embedded_gguf

    port = free_port()
    cmd = [python, "-m", "llama_cpp.server", "--model", str(embedded_gguf()), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1", *extra]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"llama-cpp-python server exited: {log.read().decode(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(f"{url}/v1/models", timeout=2).read()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"llama-cpp-python server did not answer within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def llama_server():
    proc, url = start_llama_server("--logits_all", "true")
    yield url
    stop(proc)


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster on loopback in a temp dir. initdb refuses to run as root,
    so as root the cluster runs as the ``postgres`` user (runuser)."""
    if not (PGBIN / "initdb").is_file():
        pytest.skip(f"no PostgreSQL at {PGBIN} (apt-get install postgresql, or set PGBIN)")
    as_pg: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="promptlens-pg-"))
    work.chmod(0o755)
    (work / "sock").mkdir()
    if os.geteuid() == 0:
        as_pg = ["runuser", "-u", "postgres", "--"]
        shutil.chown(work, "postgres")
        shutil.chown(work / "sock", "postgres")
    port = free_port()
    data = work / "data"
    run = lambda *cmd: subprocess.run([*as_pg, *cmd], check=True, capture_output=True)  # noqa: E731
    run(str(PGBIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    run(str(PGBIN / "pg_ctl"), "-D", str(data), "-o", f"-k {work / 'sock'} -p {port} -h 127.0.0.1",
        "-l", str(work / "sock" / "pg.log"), "-w", "start")
    try:
        run(str(PGBIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "promptlens")
        yield f"postgresql://postgres@127.0.0.1:{port}/promptlens"
    finally:
        subprocess.run([*as_pg, str(PGBIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)  # the server has its own thread; the machine may be shared
