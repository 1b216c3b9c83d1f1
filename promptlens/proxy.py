"""Cheaper copies of the model for ``mode="proxy"``, picked by measurement on this machine.

Candidates: the model in bfloat16 (only where the CPU has native bf16 instructions: on an
AVX2-only CPU bf16 matmuls are emulated and were measured 5x slower than fp32), the model with
its linear layers quantised to int8 (``torch.ao.quantization.quantize_dynamic``), or a model
folder the user names (a smaller model of the same family). ``auto`` scores the start of the
prompt with the target and each candidate, interleaved, drops candidates whose log-probs stray
from the target's, and takes the fastest of the rest; the timings and gaps go into the result,
so a report shows why that copy was used.
"""

from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import InputError

if TYPE_CHECKING:  # a proxy copies a local model: only HFBackend has one
    from .backends.base import Backend
    from .backends.hf import HFBackend

PROXIES = ("auto", "bfloat16", "int8")
FIDELITY = 0.1  # nats per token: the most a proxy's log-probs may differ from the target's on average
_CHOSEN: dict[tuple[int, str], tuple[HFBackend, dict]] = {}  # (id of the target model, choice) -> copy, record


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has bf16 matrix instructions (AVX512-BF16 or AMX-BF16)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _copy(backend: HFBackend, kind: str) -> HFBackend:
    from .backends.hf import HFBackend, load_backend

    if kind not in ("bfloat16", "int8"):
        if not Path(kind).is_dir():
            raise InputError(f"--proxy {kind!r}: choose one of {', '.join(PROXIES)} or give a model folder")
        return load_backend(kind, raw=backend.raw)
    model = copy.deepcopy(backend.model)
    if kind == "bfloat16":
        # The ignore: PreTrainedModel.to is wrapped in functools.wraps, which mypy does not bind as a method.
        model = model.to(torch.bfloat16)  # type: ignore[arg-type]
    else:
        # The body's linear layers only: the output layer is tied to the embeddings, which stay fp32.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notice for eager-mode quantisation
            model.model = torch.ao.quantization.quantize_dynamic(model.model, {torch.nn.Linear}, dtype=torch.qint8)
    return HFBackend(model, backend.tokenizer, name=f"{backend.name} ({kind} copy)", raw=backend.raw,
                     max_batch_tokens=backend.max_batch_tokens)


def _calibrate(backend: HFBackend, seq: list[int]) -> tuple[float, list[float]]:
    """Seconds to score ``seq`` through the backend's real scoring path, and every token's log-prob."""
    start = time.perf_counter()
    logprobs = backend.scorer.score([seq], [len(seq) - 1])[0]
    return time.perf_counter() - start, logprobs


def choose_proxy(backend: Backend, choice: str = "auto", sample: str = "",
                 tolerance: float = FIDELITY) -> tuple[HFBackend, dict]:
    """A cheaper copy of ``backend`` and the record of how it was chosen.

    Each candidate scores ``sample`` (the prompt being attributed; its first 128 tokens) twice,
    interleaved with the target; a candidate whose token log-probs differ from the target's by
    more than ``tolerance`` nats on average is too unfaithful to rank with (int8 dynamic
    quantisation of a 135M model was measured at about 1 nat off on a short prompt), and the
    fastest faithful one is used. If none is faithful, the most faithful is used, and said so.
    """
    from .backends.hf import HFBackend

    # Not hasattr(backend, "model"): a RemoteBackend has one too, the server's model name.
    if not isinstance(backend, HFBackend):
        raise InputError(f"--mode proxy needs a local model to copy, and backend {backend.name} has none; "
                         "use --mode hierarchical or surrogate")
    key = (id(backend.model), choice)
    if key in _CHOSEN:
        return _CHOSEN[key]
    if choice not in PROXIES:  # a model folder: another tokenizer perhaps, so nothing to compare token by token
        _CHOSEN[key] = (_copy(backend, choice), {"proxy": choice})
        return _CHOSEN[key]
    kinds = [*(["bfloat16"] if native_bf16() else []), "int8"] if choice == "auto" else [choice]
    copies = {kind: _copy(backend, kind) for kind in kinds}
    ids = backend.encode_prompt(sample or "Calibration text. " * 40)[:128]
    if len(ids) < 8:
        ids = (ids * 8)[:8]
    times: dict[str, list[float]] = {"target": [], **{k: [] for k in copies}}
    logprobs: dict[str, list[float]] = {}
    for _ in range(3):  # the first round pays one-time kernel setup and is dropped; interleaved rounds
        for kind, b in [("target", backend), *copies.items()]:
            seconds, logprobs[kind] = _calibrate(b, ids)
            times[kind].append(seconds)
    best = {k: min(v[1:]) for k, v in times.items()}
    gap = {k: float(sum(abs(a - b) for a, b in zip(logprobs[k], logprobs["target"])) / len(logprobs[k]))
           for k in copies}
    faithful = [k for k in copies if gap[k] <= tolerance]
    kind = min(faithful, key=lambda k: best[k]) if faithful else min(copies, key=lambda k: gap[k])
    record = {"proxy": kind, "candidates": kinds, "native_bf16": native_bf16(), "calibration_tokens": len(ids),
              "score_s": {k: round(v, 4) for k, v in best.items()},
              "mean_abs_logprob_gap": {k: round(v, 4) for k, v in gap.items()},
              "speedup": round(best["target"] / best[kind], 2), "faithful": bool(faithful)}
    _CHOSEN[key] = (copies[kind], record)
    return _CHOSEN[key]
