"""The remote backend against a fake OpenAI-compatible server on loopback (fast tier): both
request formats give the exact numbers the fake is built to give, and every failure names its fix."""

from __future__ import annotations

import time

import pytest

from promptlens.backends.base import Backend, check_method, supports_gradients, supports_prompt_logprobs
from promptlens.backends.remote import RemoteBackend
from promptlens.errors import BackendError, InputError
from promptlens.fix import fix
from promptlens.proxy import choose_proxy
from promptlens.rewrites import paraphrases
from promptlens.similarity import JaccardSimilarity
from promptlens.types import Case

from .fakes import FakeBackend
from .openai_fake import FakeOpenAI, expected

PROMPTS = ["Eat a banana. Question: is it ripe?\nAnswer:", "Question: is the sky blue?\nAnswer:"]
TARGETS = [[" yes", " no, it is not"], [" yes indeed"]]


def remote(fake: FakeOpenAI, **kw) -> RemoteBackend:
    kw = {"raw": True, "retries": 1, "backoff": 0.01, "timeout": 5.0, **kw}
    return RemoteBackend(fake.url, fake.tokenizer, **kw)


@pytest.mark.parametrize("fmt", ["echo", "vllm"])
def test_both_formats_give_the_exact_target_logprobs(fmt):
    with FakeOpenAI(fmt) as fake:
        backend = remote(fake, concurrency=3)
        out = backend.token_logprobs(PROMPTS, TARGETS)
        assert backend.format == fmt  # auto found the one this server speaks
    assert out == [[pytest.approx(expected(p, t)) for t in ts] for p, ts in zip(PROMPTS, TARGETS)]
    assert out[0][0] == pytest.approx([-0.3 - 3.0])  # after "banana": 3 nats less


def test_auto_prefers_vllm_token_ids_and_batches_prompts():
    with FakeOpenAI("both") as fake:
        backend = remote(fake, batch_size=8)
        backend.token_logprobs(PROMPTS, TARGETS)
        assert backend.format == "vllm"
        scoring = [r for r in fake.requests[1:]]
    assert len(scoring) == 1 and len(scoring[0]["prompt"]) == 3  # one request, three sequences


def test_same_numbers_as_the_fake_backend_contract():
    """Every backend answers out[i][j][k]; here the fake server and FakeBackend agree on shape."""
    with FakeOpenAI("echo") as fake:
        backend = remote(fake)
        assert isinstance(backend, Backend)
        out = backend.token_logprobs(PROMPTS, TARGETS)
    local = FakeBackend().token_logprobs(PROMPTS, TARGETS)
    assert [[len(t) for t in row] for row in out] == [[len(t) for t in row] for row in local]


def test_a_token_across_the_seam_is_counted_once_and_recorded():
    with FakeOpenAI("echo") as fake:
        backend = remote(fake)
        (row,), = backend.token_logprobs(["Say it. Answer:"], [["yes"]])  # the server sees "Answer:yes"
    assert row == pytest.approx([-1.0]) and backend.seam_merges == 1


def test_a_server_without_prompt_logprobs_is_refused_up_front():
    with FakeOpenAI("none") as fake:
        backend = remote(fake)
        with pytest.raises(BackendError, match="does not report log-probs of prompt tokens.*--logits_all true"):
            backend.token_logprobs(PROMPTS, TARGETS)
        assert len(fake.requests) == 2  # one probe per format, no scoring request


def test_echo_logprobs_shifted_by_one_position_are_refused():
    with FakeOpenAI("shifted") as fake:
        with pytest.raises(BackendError, match="shifted by one position.*drop --raw"):
            remote(fake).token_logprobs(PROMPTS, TARGETS)


def test_retries_with_backoff_on_503():
    with FakeOpenAI("echo", fail_first=2) as fake:
        backend = remote(fake, retries=3)
        assert backend.token_logprobs(PROMPTS[:1], TARGETS[:1])[0][0] == pytest.approx(expected(PROMPTS[0], " yes"))


def test_unreachable_server_and_timeouts_name_the_fix():
    with FakeOpenAI("echo") as fake:
        url = fake.url
    backend = RemoteBackend(url, fake.tokenizer, raw=True, retries=1, backoff=0.01)
    with pytest.raises(BackendError, match=r"cannot get an answer from the scoring server .* after 2 tries"):
        backend.token_logprobs(PROMPTS, TARGETS)
    with FakeOpenAI("echo", delay=1.0) as slow:
        backend = remote(slow, timeout=0.2, retries=1)
        start = time.monotonic()
        with pytest.raises(BackendError, match="start the server or check --server"):
            backend.token_logprobs(PROMPTS, TARGETS)
        assert time.monotonic() - start < 2.0


def test_gradient_methods_are_refused_with_the_methods_that_work():
    with FakeOpenAI("echo") as fake:
        backend = remote(fake)
        assert not supports_gradients(backend) and supports_prompt_logprobs(backend)
        with pytest.raises(InputError, match="ablation, shapley, lime, kernelshap"):
            check_method("ig", backend)
        check_method("shapley", backend)
    with pytest.raises(InputError, match="unknown server format"):
        RemoteBackend("http://127.0.0.1:1", None, format="grpc")


def test_a_server_model_name_is_no_local_model():
    """A RemoteBackend's ``model`` is the served model's name, not weights: rewrites paraphrase
    through the server's generate, and ``--mode proxy`` (a copy of local weights) is refused."""
    with FakeOpenAI("echo") as fake:
        backend = remote(fake, model="served-model")
        assert paraphrases(backend, "Read the question.", n=3, seed=0) == ["end"]  # the fake's greedy text
        with pytest.raises(InputError, match="--mode proxy needs a local model to copy, and backend served-model@"):
            choose_proxy(backend)


def test_fix_runs_on_a_remote_backend():
    template = "Eat a banana. Read the question and answer it. Question: {q}\nAnswer:"
    # 4 train cases: fewer give no significant gain to keep (stats.MIN_CASES)
    cases = [Case(vars={"q": f"question {i}?"}, target=t) for i, t in enumerate([" yes", " no"] * 4)]
    with FakeOpenAI("both") as fake:
        result = fix(template, cases, backend=remote(fake), similarity=JaccardSimilarity(), budget_trials=6,
                     rounds=1, n_train=4, threshold=0.3)
    assert "banana" not in result.best
    assert result.train_after.objective == pytest.approx(result.train_before.objective + 3.0)


def _choice(sent: str, pieces: list[tuple[str, int, float | None]], generated: str = "") -> dict:
    return {"text": sent + generated, "logprobs": {"tokens": [p for p, _, _ in pieces],
            "text_offset": [o for _, o, _ in pieces], "token_logprobs": [v for _, _, v in pieces]}}


def test_echo_offsets_without_special_tokens_and_half_characters():
    from promptlens.backends.remote import _from_echo

    # llama-cpp-python: "<s>" left out of the offsets; "á" split in two tokens, the first decodes
    # to nothing on its own; the model ended (EOS), so no entry for a generated token.
    sent = "<s>Q: hi<s>A: más."
    pieces = [("Q", 0, None), (":", 1, -1.0), (" hi", 2, -2.0), ("A", 5, -3.0), (":", 6, -0.5),
              (" m", 7, -0.1), ("", 9, -0.2), ("s", 9, -0.3), (".", 11, -0.4)]
    assert _from_echo(_choice(sent, pieces), sent, " más.", ["<s>"]) == ([-0.1, -0.2, -0.3, -0.4], 0)
    # The same with a generated token after the prompt, offsets counting the sent text (vLLM).
    pieces = [("<s>", 0, None), ("Q", 3, -1.0), (":", 4, -1.0), (" hi", 5, -2.0), ("<s>", 8, -9.0),
              ("A", 11, -3.0), (":", 12, -0.5), (" más", 13, -0.7), (".", 17, -0.2), ("!", 18, -0.01)]
    assert _from_echo(_choice(sent, pieces, "!"), sent, " más.", ["<s>"]) == ([-0.7, -0.2], 0)


@pytest.fixture(params=["FakeBackend", "remote-echo", "remote-vllm"])
def any_backend(request):
    if request.param == "FakeBackend":
        yield FakeBackend()
        return
    with FakeOpenAI(request.param.split("-")[1]) as fake:
        yield remote(fake)


def test_backend_contract(any_backend):
    """What scoring relies on, for every backend: out[i][j] has one log-prob per target token,
    every value is a finite log-prob, and a pair's scores do not depend on what else is asked."""
    out = any_backend.token_logprobs(PROMPTS + PROMPTS[:1], TARGETS + TARGETS[:1])
    assert [len(row) for row in out] == [len(ts) for ts in TARGETS + TARGETS[:1]]
    assert all(row and all(-1e4 < v <= 0 for v in row) for rows in out for row in rows)
    assert out[-1] == out[0]
    assert any_backend.token_logprobs([PROMPTS[1]], [TARGETS[1]]) == [out[1]]
    assert supports_prompt_logprobs(any_backend)


# --- API keys, Retry-After, https ------------------------------------------------------------------

KEY = "sk-test-0123456789abcdef"


def test_api_key_is_sent_as_a_bearer_token_and_kept_out_of_errors():
    with FakeOpenAI("echo", api_key=KEY) as fake:
        backend = remote(fake, api_key=KEY)
        assert backend.token_logprobs(PROMPTS[:1], TARGETS[:1])[0][0] == pytest.approx(expected(PROMPTS[0], " yes"))
        assert fake.headers[-1]["Authorization"] == f"Bearer {KEY}"
        assert KEY not in repr(backend) and KEY not in backend.name
        wrong = remote(fake, api_key="sk-wrong-key-quoted-back")
        with pytest.raises(BackendError, match="HTTP 401.*--api-key-env") as err:
            wrong.token_logprobs(PROMPTS[:1], TARGETS[:1])
        assert "sk-wrong-key-quoted-back" not in str(err.value) and "***" in str(err.value)
        with pytest.raises(BackendError, match="HTTP 401"):
            remote(fake).token_logprobs(PROMPTS[:1], TARGETS[:1])


def test_the_key_reaches_no_output_json_html_cache_or_message(tmp_path, monkeypatch, capsys):
    """Through the command line: attribute with --json and --html, lint with its cache, and a
    failing run; the key is in none of what they print or write."""
    from promptlens.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MY_SERVER_KEY", KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / "t.txt").write_text("Eat a banana. Question: {q}\nAnswer:")
    (tmp_path / "c.jsonl").write_text('{"vars": {"q": "is it ripe?"}, "target": " yes"}\n'
                                      '{"vars": {"q": "is it red?"}, "target": " no"}\n')
    with FakeOpenAI("echo", api_key=KEY) as fake:
        common = ["--server", fake.url, "--server-format", "echo", "--api-key-env", "MY_SERVER_KEY", "--raw"]
        assert main(["attribute", "t.txt", "--cases", "c.jsonl", "--json", "a.json", "--html", "a.html",
                     *common]) == 0
        assert main(["lint", "t.txt", "--cases", "c.jsonl", "--cache-dir", "cache", "--format", "sarif",
                     "--fail-on", "never", *common]) == 0
        assert all(h.get("Authorization") == f"Bearer {KEY}" for h in fake.headers)
        monkeypatch.setenv("MY_SERVER_KEY", "sk-wrong-key-quoted-back")
        assert main(["attribute", "t.txt", "--cases", "c.jsonl", *common]) == 2
    out = capsys.readouterr()
    assert "HTTP 401" in out.err
    monkeypatch.delenv("MY_SERVER_KEY")
    assert main(["attribute", "t.txt", "--cases", "c.jsonl", *common]) == 2
    assert "MY_SERVER_KEY: that environment variable is not set" in capsys.readouterr().err
    written = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 5  # t.txt, c.jsonl, a.json, a.html, a cache entry
    for text in (out.out, out.err, *written):
        assert KEY not in text and "sk-wrong-key-quoted-back" not in text


def test_retry_after_is_honoured_on_429_and_503(monkeypatch):
    import promptlens.backends.remote as remote_module

    waits: list[float] = []
    monkeypatch.setattr(remote_module.time, "sleep", waits.append)
    for status in (429, 503):
        waits.clear()
        with FakeOpenAI("echo", fail_first=2, fail_status=status, retry_after="3") as fake:
            backend = remote(fake, retries=3, backoff=0.01)
            backend.token_logprobs(PROMPTS[:1], [[" yes"]])
        assert waits[:2] == [3.0, 3.0]  # the server's wait, not the 0.01 s backoff
    assert remote_module._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert remote_module._retry_after("garbage") == 0.0 and remote_module._retry_after("2.5") == 2.5


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A certificate for 127.0.0.1 made for this test run (openssl), and a server context."""
    import shutil
    import ssl
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


def test_https_with_a_trusted_self_signed_certificate(self_signed, monkeypatch):
    cert, context = self_signed
    with FakeOpenAI("echo", tls=context) as fake:
        assert fake.url.startswith("https://127.0.0.1:")
        with pytest.raises(BackendError, match="cannot verify the TLS certificate.*--server-ca"):
            remote(fake).token_logprobs(PROMPTS[:1], [[" yes"]])
        trusted = remote(fake, ca_file=str(cert))
        assert trusted.token_logprobs(PROMPTS[:1], [[" yes"]])[0][0] == pytest.approx(expected(PROMPTS[0], " yes"))
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the documented alternative
        assert remote(fake).token_logprobs(PROMPTS[:1], [[" yes"]])[0][0] == pytest.approx(expected(PROMPTS[0], " yes"))
    with pytest.raises(InputError, match="--server-ca"):
        RemoteBackend("https://127.0.0.1:1", None, ca_file=str(cert.parent / "missing.pem"))
