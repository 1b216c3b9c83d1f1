"""A fake OpenAI-compatible completion server on loopback (stdlib only), with known answers.

Tokens are words with their leading whitespace. The log-prob of a token is ``-len(word) / 10``,
and 3 nats less when "banana" occurs anywhere before it: exact numbers a test can write down.

``mode`` picks what the server can do: ``echo`` (llama-cpp-python: echo+logprobs, text prompts
only), ``vllm`` (prompt_logprobs, token-id prompts too), ``both``, ``none`` (log-probs of
generated tokens only, like a server that cannot score a given target), or ``shifted``
(llama-cpp-python's echo on a prompt without BOS: each entry one position late, and the entry of
the generated token missing).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_WORD = re.compile(r"\s*\S+|\s+$")


class WordTokenizer:
    """Words with their leading whitespace; ids are handed out on first sight (shared with the
    server, which turns ids back into text). No chat template: use it with ``raw=True``."""

    chat_template = None

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.words: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [self.id(w) for w in _WORD.findall(text)]}

    def id(self, word: str) -> int:
        with self.lock:
            if word not in self.ids:
                self.ids[word] = len(self.words)
                self.words.append(word)
            return self.ids[word]


def word_logprob(before: str, word: str) -> float:
    return -len(word.strip()) / 10 - (3.0 if "banana" in before else 0.0)


def expected(prompt: str, target: str) -> list[float]:
    """What the fake answers for ``target`` after ``prompt`` (joined: the target's own words)."""
    words = _WORD.findall(target)
    return [word_logprob(prompt + "".join(words[:k]), w) for k, w in enumerate(words)]


class FakeOpenAI:
    """Start with ``with FakeOpenAI(mode) as fake:``; ``fake.url`` is its base URL."""

    def __init__(self, mode: str = "both", *, fail_first: int = 0, delay: float = 0.0, fail_status: int = 503,
                 retry_after: str | None = None, api_key: str | None = None, tls: Any = None) -> None:
        """``fail_first`` requests get ``fail_status`` (with ``Retry-After: retry_after`` when
        given); with ``api_key`` a request without ``Authorization: Bearer <key>`` gets 401 and a
        body that quotes the key it got (as some servers do); ``tls`` is an ``ssl.SSLContext``
        (server side) to serve https."""
        self.mode = mode
        self.fail_first = fail_first
        self.delay = delay
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.api_key = api_key
        self.times: list[float] = []  # arrival time of each request
        self.headers: list[dict[str, str]] = []
        self.tokenizer = WordTokenizer()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                    fake.times.append(time.monotonic())
                    fake.headers.append(dict(self.headers))
                    failing = fake.fail_first > 0
                    fake.fail_first -= 1
                if fake.delay:
                    time.sleep(fake.delay)
                sent = self.headers.get("Authorization", "")
                if fake.api_key and sent != f"Bearer {fake.api_key}":
                    return self._send(401, {"error": f"invalid API key: {sent.removeprefix('Bearer ')!r}"})
                if failing:
                    extra = {"Retry-After": fake.retry_after} if fake.retry_after is not None else {}
                    return self._send(fake.fail_status, {"error": "busy"}, extra)
                status, answer = fake.answer(body)
                self._send(status, answer)

            def _send(self, status: int, answer: dict[str, Any], extra: dict[str, str] | None = None) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeOpenAI":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        prompt = body["prompt"]
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], str):
            if self.mode not in ("vllm", "both"):
                return 422, {"detail": "prompt: Input should be a valid string"}
            prompts = [prompt] if isinstance(prompt[0], int) else prompt
            return 200, {"choices": [self._vllm(i, ids, body) for i, ids in enumerate(prompts)]}
        text = prompt if isinstance(prompt, str) else prompt[0]
        words = _WORD.findall(text)
        choice: dict[str, Any] = {"index": 0, "text": (text if body.get("echo") else "") + " end"}
        if body.get("logprobs") is not None:
            if body.get("echo") and self.mode == "shifted":  # llama-cpp-python without BOS: one entry short
                offsets = [sum(len(w) for w in words[:k]) for k in range(len(words))]
                values = [None] + [word_logprob("".join(words[: k + 1]), words[k + 1] if k + 1 < len(words) else w)
                                   for k, w in enumerate(words)][1:]
                choice["logprobs"] = {"tokens": words, "text_offset": offsets, "token_logprobs": values,
                                      "top_logprobs": None}
            elif body.get("echo") and self.mode in ("echo", "both"):
                offsets = [sum(len(w) for w in words[:k]) for k in range(len(words) + 1)]
                values = [None] + [word_logprob("".join(words[:k]), w) for k, w in enumerate(words)][1:]
                choice["logprobs"] = {"tokens": words + [" end"], "text_offset": offsets,
                                      "token_logprobs": values + [-0.1], "top_logprobs": None}
            else:
                choice["logprobs"] = {"tokens": [" end"], "text_offset": [len(text)], "token_logprobs": [-0.1],
                                      "top_logprobs": None}
        return 200, {"choices": [choice]}

    def _vllm(self, index: int, ids: list[int], body: dict[str, Any]) -> dict[str, Any]:
        words = [self.tokenizer.words[i] for i in ids]
        choice: dict[str, Any] = {"index": index, "text": " end"}
        if "prompt_logprobs" in body:
            choice["prompt_logprobs"] = [None] + [
                {str(i): {"logprob": word_logprob("".join(words[:k]), w), "rank": 1, "decoded_token": w}}
                for k, (i, w) in enumerate(zip(ids, words)) if k > 0]
        return choice
