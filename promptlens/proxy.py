"""Cheaper copies of the model for ``mode="proxy"``, picked by measurement on this machine.

Candidates, where the CPU has native bf16 instructions (on an AVX2-only CPU bf16 matmuls are
emulated and were measured 5x slower than fp32):

* ``bf16-blocks``: each decoder layer's attention and MLP in bfloat16, while the residual stream,
  the norms, the embeddings and the output layer stay float32. Every matmul is bf16 (the
  speed), but the rounding of the long-lived residual sum, which accumulates over the layers,
  is gone. On the 70-segment long workload (Xeon, AMX-BF16, 1 thread) its leave-one-out effects
  were 2.7x as fast as float32's and differed from them by 0.028 nats (std over segments)
  against 0.047 for the whole model in bf16, at 1.05x bf16's time (single sequences: 1.25-1.34x).
* ``bfloat16``: the whole model in bfloat16;

and on any CPU ``int8``, the body's linear layers quantised to int8
(``torch.ao.quantization.quantize_dynamic``), or a model folder the user names (a smaller model
of the same family). ``auto`` scores the start of the prompt with the target and each candidate,
interleaved, drops candidates whose log-probs stray from the target's or that are no faster,
and of the rest takes the one with the smallest gap² x time (see :func:`pick`); the timings
and gaps go into the result, so a report shows why that copy was used.
"""

from __future__ import annotations

import copy
import time
import types
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from .errors import InputError

if TYPE_CHECKING:  # a proxy copies a local model: only HFBackend has one
    from transformers import PreTrainedModel

    from .backends.base import Backend
    from .backends.hf import HFBackend

PROXIES = ("auto", "bf16-blocks", "bfloat16", "int8")
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

    if kind not in PROXIES[1:]:
        if not Path(kind).is_dir():
            raise InputError(f"--proxy {kind!r}: choose one of {', '.join(PROXIES)} or give a model folder")
        return load_backend(kind, raw=backend.raw)
    if kind == "bf16-blocks":
        in_blocks = {id(q) for block in _bf16_blocks(backend.model) for q in block.parameters()}
        model = _sharing_copy(backend.model, lambda p: id(p) in in_blocks)
        for block in _bf16_blocks(model):
            _in_bf16(block)
    elif kind == "bfloat16":
        model = _sharing_copy(backend.model, lambda p: True)
    else:
        # The body's linear layers only: the output layer is tied to the embeddings, which stay fp32.
        # The copy shares the float weights until quantize_dynamic swaps its linear layers in place.
        model = _sharing_copy(backend.model, lambda p: False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notice for eager-mode quantisation
            torch.ao.quantization.quantize_dynamic(model.model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return HFBackend(model, backend.tokenizer, name=f"{backend.name} ({kind} copy)", raw=backend.raw,
                     max_batch_tokens=backend.max_batch_tokens)


def _sharing_copy(model: PreTrainedModel, to_bf16: Callable[[torch.Tensor], bool]) -> PreTrainedModel:
    """A copy of ``model`` whose parameters are new bfloat16 tensors where ``to_bf16(parameter)``
    and the model's own tensors elsewhere: no float32 copy of the weights is made (a deepcopy
    and a conversion took 2.5 s for the embedded model). The shared tensors are only read
    (inference); modules, buffers and the config are copied. Tied weights stay tied (one
    parameter, one copy)."""
    memo: dict[int, object] = {}
    for param in model.parameters():  # each tied parameter once
        memo[id(param)] = (torch.nn.Parameter(param.detach().to(torch.bfloat16), requires_grad=False)
                           if to_bf16(param) else param)
    return copy.deepcopy(model, memo)


def _to(value: object, dtype: torch.dtype) -> object:
    """``value`` with its floating-point tensors (also inside tuples) cast to ``dtype``."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    if isinstance(value, tuple):
        return tuple(_to(v, dtype) for v in value)
    return value


def _in_bf16(module: torch.nn.Module) -> None:
    """Run ``module`` (its weights already bfloat16) between float32 neighbours: its
    floating-point inputs are cast to bf16 and its first output back to float32 (the instance's
    forward is wrapped, so the module keeps its name and place in the model)."""
    inner = module.forward

    def forward(self: torch.nn.Module, *args: object, **kwargs: object) -> object:
        out = inner(*(_to(a, torch.bfloat16) for a in args), **{k: _to(v, torch.bfloat16) for k, v in kwargs.items()})
        if isinstance(out, tuple):
            return (_to(out[0], torch.float32), *out[1:])
        return _to(out, torch.float32)

    module.forward = types.MethodType(forward, module)


def _bf16_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every decoder layer's attention and MLP: what ``bf16-blocks`` runs in bfloat16."""
    layers = getattr(getattr(model, "base_model", model), "layers", None)
    blocks = [getattr(layer, name, None) for layer in layers or () for name in ("self_attn", "mlp")]
    found = [b for b in blocks if isinstance(b, torch.nn.Module)]
    if not found or len(found) < len(blocks):
        raise InputError(f"--proxy bf16-blocks needs decoder layers with self_attn and mlp, which "
                         f"{type(model).__name__} does not have; use --proxy bfloat16")
    return found


def _calibrate(backend: HFBackend, seq: list[int]) -> tuple[float, list[float]]:
    """Seconds to score ``seq`` through the backend's real scoring path, and every token's log-prob."""
    start = time.perf_counter()
    logprobs = backend.scorer.score([seq], [len(seq) - 1])[0]
    return time.perf_counter() - start, logprobs


def pick(seconds: dict[str, float], gap: dict[str, float], tolerance: float = FIDELITY) -> str:
    """The copy ``auto`` uses, from each candidate's scoring time and mean log-prob gap to the
    target (``seconds`` holds the target's own time too, under "target").

    Of the copies that are faithful (gap within ``tolerance``) and faster than the target, the
    one with the smallest gap² x time: a proxy's error is what reorders small effects, and
    averaging over more cases would take (gap ratio)² as many forwards to bring a noisier copy
    to the same error, so that product is the cost of a given accuracy. If no copy qualifies,
    the most faithful (the caller records that none was faithful)."""
    good = [k for k in gap if gap[k] <= tolerance and seconds[k] < seconds.get("target", float("inf"))]
    if not good:
        return min(gap, key=lambda k: gap[k])
    return min(good, key=lambda k: gap[k] ** 2 * seconds[k])


def choose_proxy(backend: Backend, choice: str = "auto", sample: str = "",
                 tolerance: float = FIDELITY) -> tuple[HFBackend, dict]:
    """A cheaper copy of ``backend`` and the record of how it was chosen.

    Each candidate scores ``sample`` (the prompt being attributed; its first 128 tokens) twice,
    interleaved with the target; a candidate whose token log-probs differ from the target's by
    more than ``tolerance`` nats on average is too unfaithful to rank with (int8 dynamic
    quantisation of a 135M model was measured at about 1 nat off on a short prompt); :func:`pick`
    chooses among the rest. If none is faithful, the most faithful is used, and said so.
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
    kinds = [*(["bf16-blocks", "bfloat16"] if native_bf16() else []), "int8"] if choice == "auto" else [choice]
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
    kind = pick(best, gap, tolerance)
    record = {"proxy": kind, "candidates": kinds, "native_bf16": native_bf16(), "calibration_tokens": len(ids),
              "score_s": {k: round(v, 4) for k, v in best.items()},
              "mean_abs_logprob_gap": {k: round(v, 4) for k, v in gap.items()},
              "speedup": round(best["target"] / best[kind], 2), "faithful": bool(faithful)}
    _CHOSEN[key] = (copies[kind], record)
    return _CHOSEN[key]
