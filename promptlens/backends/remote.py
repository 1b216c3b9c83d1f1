"""A remote scoring backend: an OpenAI-compatible completion server that reports prompt log-probs.

Two request formats, both on ``POST {base_url}/v1/completions``:

* ``echo`` (the OpenAI legacy format; llama-cpp-python's server with ``--logits_all true``):
  ``echo=true, logprobs=1, max_tokens=1`` returns, per token of prompt+target, its string, its
  character offset and its log-prob. The text is sent as text, so the server tokenizes
  prompt+target in one piece; the target is the tokens whose characters lie in the target's span
  (located from the end of the echoed prompt). A server token that straddles the seam between
  prompt and target is counted in full and recorded in ``seam_merges``.
* ``vllm`` (vLLM's ``prompt_logprobs``): the prompt is sent as token ids, made by the local
  tokenizer exactly as the local backend makes them (prompt and target tokenized separately), so
  there is no seam to resolve: the last ``len(target_ids)`` entries are the target.

The chat template is applied here, by the local tokenizer of the same model, so a remote score
and a local score are the log-prob of the same text. ``format="auto"`` probes the server once:
vLLM's format when it answers it, else echo; a server that gives neither is refused with a message
that says which flag it needs. Requests run on a thread pool, with a timeout each and retries
with exponential backoff on connection errors, 429 and 5xx.
"""

from __future__ import annotations

import json
import math
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .. import progress
from ..errors import BackendError, InputError
from .base import ChatPrompts

FORMATS = ("auto", "echo", "vllm")
_RETRY_STATUS = {429, 500, 502, 503, 504}
# Counting continues a pattern every model has seen: its greedy next tokens are near-certain.
PROBE_PROMPT = "1, 2, 3, 4, 5, 6, 7, 8,"
PROBE_TARGET = " 9, 10"


@dataclass
class RemoteBackend(ChatPrompts):
    """Scores prompts on an OpenAI-compatible server. ``tokenizer`` is the local tokenizer of the
    served model (renders the chat template, counts tokens); ``raw=True`` sends prompts as they are.

    ``concurrency`` requests are in flight at once; ``batch_size`` sequences go in one request
    (vLLM accepts a list of prompts; llama-cpp-python's server takes one, so echo uses 1).
    """

    base_url: str
    tokenizer: Any
    model: str | None = None  # the server's model name ("model" field); None: the server's default
    raw: bool = False
    format: str = "auto"
    concurrency: int = 4
    batch_size: int = 8
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 0.5
    context_length: int = 2048
    name: str = ""
    # Sent as ``Authorization: Bearer``; never part of the name, the repr, a report or a message.
    api_key: str | None = field(default=None, repr=False)
    ca_file: str | None = None  # extra CA certificates (PEM) to trust for an https server
    max_retry_after: float = 120.0  # the longest Retry-After wait honoured (seconds)
    forward_passes: int = field(default=0, init=False)  # requests sent
    tokens_computed: int = field(default=0, init=False)  # tokens in the sequences sent
    seam_merges: int = field(default=0, init=False)  # echo: target tokens that began in the prompt

    supports_gradients = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InputError(f"unknown server format {self.format!r}; choose one of: {', '.join(FORMATS)}")
        self.base_url = self.base_url.rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise InputError(f"--server {self.base_url}: give an http:// or https:// URL, e.g. http://127.0.0.1:8000")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[: -len("/v1")]
        self.name = self.name or f"{self.model or 'remote'}@{self.base_url}"
        self._checked = False
        self._ssl = _ssl_context(self.ca_file) if self.base_url.startswith("https:") else None
        self._lock = threading.Lock()  # the counters are updated from the request threads
        # Special-token strings: llama-cpp-python's echo offsets leave them out of the text.
        self._specials = sorted(set(getattr(self.tokenizer, "all_special_tokens", None) or []), key=len, reverse=True)

    # --- the capabilities ---------------------------------------------------------------------

    @property
    def supports_prompt_logprobs(self) -> bool:
        """Probes the server on first use: True, or a BackendError that names the fix."""
        self.check()
        return True

    def check(self) -> None:
        """Ask the server to score a known target once; pick the format (``auto``) and refuse a
        server that cannot report log-probs of prompt tokens."""
        if self._checked:
            return
        problems = []
        for fmt in (("vllm", "echo") if self.format == "auto" else (self.format,)):
            merges = self.seam_merges
            try:
                (row,) = self._score_batch([(PROBE_PROMPT, PROBE_TARGET)], fmt)
            except _NoPromptLogprobs as exc:
                problems.append(f"{fmt}: {exc}")
                continue
            if not row or not all(math.isfinite(v) for v in row):
                problems.append(f"{fmt}: the probe target got log-probs {row}")
                continue
            self.format = fmt
            self._checked = True
            self.seam_merges = merges  # the probe's own seam ("\n 9" in a chat) is not the user's
            return
        raise BackendError(
            f"the server at {self.base_url} does not report log-probs of prompt tokens "
            f"({'; '.join(problems)}), so it cannot score a given target; serve the model with "
            "llama-cpp-python (--logits_all true) or vLLM (prompt_logprobs), or drop --server"
        )

    # --- the Backend protocol -----------------------------------------------------------------

    def token_logprobs(self, prompts: Sequence[str], targets: Sequence[Sequence[str]]) -> list[list[list[float]]]:
        """``out[i][j][k]``: log-prob of token k of ``targets[i][j]`` after ``prompts[i]``."""
        self.check()
        pairs = list(dict.fromkeys((p, t) for p, ts in zip(prompts, targets) for t in ts))
        for _, t in pairs:
            if not t:
                raise InputError("a target is empty; give a non-empty target")
        batch = 1 if self.format == "echo" else max(1, self.batch_size)
        chunks = [pairs[i : i + batch] for i in range(0, len(pairs), batch)]
        progress.planned(len(chunks))  # a bar, if a job opened one (promptlens.progress)
        results = []
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            for result in pool.map(lambda c: self._score_batch(c, self.format), chunks):
                results.append(result)
                progress.advance()  # here, not in the workers: the bar is this thread's
        by_pair = dict(zip(pairs, (row for rows in results for row in rows)))
        return [[by_pair[(p, t)] for t in ts] for p, ts in zip(prompts, targets)]

    def generate(self, prompt: str, max_new_tokens: int = 32) -> str:
        """The server's greedy continuation of the rendered prompt."""
        body = {"prompt": self.render(prompt), "max_tokens": max_new_tokens, "temperature": 0.0}
        return str(self._post(body)["choices"][0]["text"]).strip()

    # --- requests -----------------------------------------------------------------------------

    def _score_batch(self, pairs: Sequence[tuple[str, str]], fmt: str) -> list[list[float]]:
        if fmt == "vllm":
            ids = [(self.encode_prompt(p), self.encode_target(t)) for p, t in pairs]
            self._check_length(len(a) + len(b) for a, b in ids)
            body = {"prompt": [a + b for a, b in ids], "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
            choices = sorted(self._post(body)["choices"], key=lambda c: c.get("index", 0))
            self._count(tokens=sum(len(a) + len(b) for a, b in ids))
            return [_from_prompt_logprobs(c, a + b, len(b)) for c, (a, b) in zip(choices, ids)]
        rows = []
        for prompt, target in pairs:
            text = self.render(prompt)
            n = len(self.encode_prompt(prompt)) + len(self.encode_target(target))
            self._check_length([n])
            body = {"prompt": text + target, "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 1}
            row, merged = _from_echo(self._post(body)["choices"][0], text + target, target, self._specials)
            self._count(tokens=n, merges=merged)
            rows.append(row)
        return rows

    def _count(self, *, requests: int = 0, tokens: int = 0, merges: int = 0) -> None:
        with self._lock:
            self.forward_passes += requests
            self.tokens_computed += tokens
            self.seam_merges += merges

    def _check_length(self, lengths: Iterable[int]) -> None:
        longest = max(lengths, default=0)
        if longest > self.context_length:
            raise InputError(
                f"prompt plus target is {longest} tokens, longer than the context of {self.context_length} "
                "assumed for the server; shorten the prompt or the cases"
            )

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One completion request, retried with exponential backoff on connection errors, 429
        and 5xx; a 4xx answer is the caller's mistake and is raised at once."""
        if self.model:
            body = {"model": self.model, **body}
        data = json.dumps(body).encode()
        url = f"{self.base_url}/v1/completions"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last, wait = "", 0.0
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(max(wait, self.backoff * 2 ** (attempt - 1)))
            wait = 0.0
            # base_url is checked to be http(s) in __post_init__: no file:// or custom scheme reaches urlopen.
            request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl) as response:  # noqa: S310
                    self._count(requests=1)
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                detail = self._scrub(exc.read().decode(errors="replace")[:300])
                if exc.code in (429, 503):
                    wait = min(_retry_after(exc.headers.get("Retry-After")), self.max_retry_after)
                if exc.code in (401, 403):
                    raise BackendError(
                        f"the server at {self.base_url} refused the request (HTTP {exc.code}: {detail}); "
                        "set the API key in the environment variable --api-key-env names") from exc
                # llama-cpp-python answers a request it cannot parse (e.g. a token-id prompt) with
                # HTTP 500 and a validation error, and one for logprobs without --logits_all true
                # the same way: neither gets better by retrying.
                if "logits_all" in detail or "validation error" in detail:
                    raise _NoPromptLogprobs(f"HTTP {exc.code}: {detail[:120]}") from exc
                if exc.code not in _RETRY_STATUS:
                    raise _NoPromptLogprobs(f"HTTP {exc.code}: {detail}") if exc.code in (400, 422) else BackendError(
                        f"the server at {self.base_url} answered HTTP {exc.code}: {detail}; check --server and "
                        "--server-model") from exc
                last = f"HTTP {exc.code}: {detail}"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, ssl.SSLCertVerificationError):
                    raise BackendError(
                        f"cannot verify the TLS certificate of {self.base_url} ({exc.reason.verify_message}); "
                        "trust its CA with --server-ca FILE.pem (or SSL_CERT_FILE)") from exc
                last = self._scrub(str(exc.reason))
            except (ConnectionError, TimeoutError, OSError) as exc:
                last = self._scrub(str(exc))
            except json.JSONDecodeError as exc:
                raise BackendError(f"the server at {self.base_url} did not answer JSON; is --server an "
                                   "OpenAI-compatible completion server?") from exc
        raise BackendError(
            f"cannot get an answer from the scoring server at {self.base_url} after {self.retries + 1} tries "
            f"({last}); start the server or check --server"
        )

    def _scrub(self, text: str) -> str:
        """A server may quote the key back in an error; it must not reach a message or a log."""
        return text.replace(self.api_key, "***") if self.api_key else text


def _retry_after(value: str | None) -> float:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - time.time())


def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's trusted CAs (which honour ``SSL_CERT_FILE``), plus ``ca_file`` if given."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"--server-ca {ca_file}: cannot read it as PEM certificates ({exc}); check the path") from exc
    return context


class _NoPromptLogprobs(BackendError):
    """The server answered, but not with prompt log-probs in the format asked for."""


def _from_prompt_logprobs(choice: dict[str, Any], ids: list[int], n_target: int) -> list[float]:
    """vLLM: ``prompt_logprobs[i]`` is None for the first token, else ``{token_id: {logprob, ...}}``
    (the prompt's own token is always among the keys)."""
    entries = choice.get("prompt_logprobs")
    if not isinstance(entries, list) or len(entries) != len(ids):
        raise _NoPromptLogprobs("the answer has no prompt_logprobs for every prompt token")
    out = []
    for token, entry in zip(ids[-n_target:], entries[-n_target:]):
        value = (entry or {}).get(str(token))
        if value is None:
            raise _NoPromptLogprobs(f"prompt_logprobs lacks the prompt's own token {token}")
        out.append(float(value["logprob"] if isinstance(value, dict) else value))
    return out


def _from_echo(choice: dict[str, Any], sent: str, target: str, specials: Sequence[str] = ()) -> tuple[list[float], int]:
    """Echo format: the target's tokens are the prompt tokens whose characters lie in the last
    ``len(target)`` characters of the prompt. Token k covers the characters from its offset to
    the next token's offset (a token's own string can be short: a token that holds half of a
    UTF-8 character decodes to nothing). Servers differ in what the offsets count: the sent text
    (vLLM, OpenAI), or the text without special tokens such as ``<|im_start|>``
    (llama-cpp-python); the prompt ends where a token boundary falls in one of the two. (Known
    gap: when the model's next token is EOS, llama-cpp-python sends no entry after the prompt, so
    the last token's end comes from its own string; a target whose last token starts inside a
    UTF-8 character then cannot be located and is refused with a BackendError, never misread.)
    Returns the log-probs, and 1 when the first target token began inside the prompt (a merge
    across the seam), else 0."""
    lp = choice.get("logprobs") or {}
    offsets, tokens, values = lp.get("text_offset"), lp.get("tokens"), lp.get("token_logprobs")
    if not offsets or not tokens or values is None or not len(offsets) == len(tokens) == len(values):
        raise _NoPromptLogprobs("the answer has no logprobs (is echo with logprobs supported?)")
    text = str(choice.get("text", ""))
    if not text.startswith(sent):
        raise _NoPromptLogprobs("the answer does not echo the prompt")
    generated = text[len(sent):]  # echo: text is the prompt + completion
    bare = sent
    for special in specials:
        bare = bare.replace(special, "")
    if generated and offsets[-1] < len(bare):
        # Something was generated, yet no entry starts at or after the prompt's end (in either
        # way of counting): the entries stop one short, each holding the log-prob read one
        # position late (llama-cpp-python's echo when the prompt does not start with BOS).
        raise _NoPromptLogprobs(
            "its echo log-probs stop before the generated token, so they are shifted by one position "
            "(llama-cpp-python does this when the prompt does not start with the BOS token, "
            "abetlen/llama-cpp-python#1983; use the chat template, i.e. drop --raw, or vLLM)")
    ends = list(offsets[1:]) + [offsets[-1] + len(str(tokens[-1]))]
    if not any(o < len(bare) for o in offsets):
        raise _NoPromptLogprobs("the answer has log-probs of generated tokens only")
    for end in dict.fromkeys((len(sent), len(bare))):
        start = end - len(target)
        rows = [k for k, o in enumerate(offsets) if o < end and (o >= start or ends[k] > start)]
        if rows and ends[rows[-1]] == end and offsets[rows[0]] <= start:
            break
    else:
        raise BackendError(f"cannot find the target {target!r} among the tokens the server echoed; "
                           "check that --server serves the same model as the local tokenizer (--model)")
    picked = [values[k] for k in rows]
    if any(v is None for v in picked):
        raise _NoPromptLogprobs("the server gives no log-prob for prompt tokens (llama-cpp-python needs "
                                "--logits_all true)")
    return [float(v) for v in picked], int(offsets[rows[0]] < start)


def remote_backend(url: str, *, model: str | None = None, tokenizer_from: str | None = None, raw: bool | None = None,
                   **kw: Any) -> RemoteBackend:
    """A RemoteBackend with the local tokenizer of ``tokenizer_from`` (a model folder) or, by
    default, of the embedded SmolLM2 (what ``make test-integration`` serves)."""
    from transformers import AutoTokenizer

    from .hf import EMBEDDED_MODEL, _embedded_safetensors

    folder = tokenizer_from or _embedded_safetensors()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except OSError as exc:
        raise InputError(f"cannot load the tokenizer from {folder}: {exc}; give --model FOLDER of the served "
                         "model (only its tokenizer is read)") from exc
    if raw is None:
        raw = not getattr(tokenizer, "chat_template", None)
    name = f"{model or (Path(tokenizer_from).name if tokenizer_from else EMBEDDED_MODEL)}@{url.rstrip('/')}"
    return RemoteBackend(url, tokenizer, model=model, raw=raw, name=name, **kw)


if TYPE_CHECKING:  # mypy checks here that the remote backend generates and counts tokens
    from .base import GeneratingBackend, TokenCountingBackend

    _GENERATES: type[GeneratingBackend] = RemoteBackend
    _COUNTS: type[TokenCountingBackend] = RemoteBackend
