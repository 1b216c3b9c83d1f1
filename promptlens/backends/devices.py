"""What the CPU can do natively, and the dtype ``auto`` picks. Torch-free at import: lint's
cache key and the command line ask before any model (or torch) is needed.

Measured with ``benchmarks/attribution_speed.py`` (12-segment chat prompt): on an AVX2-only CPU,
bfloat16 ran attribution 5x slower than float32 (12.6 s vs 2.34 s), since every bf16 matmul is
emulated; on an AMD EPYC with AVX512-BF16 it ran 1.59x faster than float32 (0.846 s vs 1.344 s),
max |difference| 0.27 nats. So ``auto`` picks bfloat16 only where the CPU has it natively.
"""

from __future__ import annotations

import platform
import sys
import warnings
from pathlib import Path
from typing import TextIO

from ..errors import PromptLensWarning

DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")
_X86_BF16 = ("avx512_bf16", "amx_bf16")
SLOW_BF16 = ("bfloat16 on this CPU is emulated (no {flags}): attribution ran 5x slower than float32 on such a "
             "CPU (12.6 s vs 2.34 s, AVX2-only); use --dtype float32, or --dtype auto")


def _cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (``flags`` on x86, ``Features`` on ARM);
    None where there is no such file (macOS, Windows)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def cpu_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True when the CPU runs bfloat16 matmuls natively: x86 with AVX512-BF16 or AMX-BF16, ARM
    with the BF16 extension. Without ``/proc/cpuinfo``, torch's own report (x86 only)."""
    flags = _cpu_flags(cpuinfo)
    if flags is not None:
        return bool(flags & set(_X86_BF16)) or ("bf16" in flags and "aarch64" in platform.machine().lower())
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """``auto``: bfloat16 on a CPU with native bf16 (faster there, as measured above), float32 on
    other CPUs and on mps; on CUDA, bfloat16 where the GPU has it, else float16. Any other name is
    returned as it is (``check_device`` validates it)."""
    if dtype != "auto":
        return dtype
    kind = device.split(":")[0]
    if kind == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float16"
    if kind == "cpu":
        return "bfloat16" if cpu_native_bf16() else "float32"
    return "float32"


def warn_slow_bf16(device: str, dtype: str) -> None:
    """One warning when bfloat16 is asked for on a CPU that emulates it."""
    if dtype == "bfloat16" and device.split(":")[0] == "cpu" and not cpu_native_bf16():
        flags = "avx512_bf16 or amx_bf16" if "arm" not in platform.machine().lower() else "bf16"
        warnings.warn(SLOW_BF16.format(flags=flags), PromptLensWarning, stacklevel=3)


def show_warnings_on_one_line() -> None:
    """For the command line: a PromptLensWarning prints as ``promptlens: warning: ...``."""
    default = warnings.showwarning
    if getattr(default, "promptlens", False):
        return

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:  # warnings.showwarning's signature
        if issubclass(category, PromptLensWarning):
            print(f"promptlens: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    show.promptlens = True  # type: ignore[attr-defined]  # marks our hook, so a second call keeps it
    warnings.showwarning = show
