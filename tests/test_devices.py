"""Device and dtype selection: refused up front with the fix, and bfloat16's numeric difference
to float32 on the real model (measured on CPU: 32 entailed_polarity cases, yes/no targets, max
|diff| 0.19 nats per token, mean 0.06, no yes/no decision flipped; the bound below is 2x that)."""

from __future__ import annotations

import pytest
import torch

from promptlens.backends.hf import check_device, load_backend
from promptlens.errors import InputError

BF16_TOLERANCE = 0.4  # nats per token


@pytest.mark.parametrize("device,dtype,message", [
    ("cpu", "float64", "unknown dtype 'float64'; choose one of: auto, float32, bfloat16, float16"),
    ("cpu", "float16", "use --dtype bfloat16 or float32"),
    ("tpu9", "float32", "unknown device 'tpu9'"),
])
def test_bad_device_or_dtype_is_refused_with_the_fix(device, dtype, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_device(device, dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(InputError, match="torch sees no CUDA GPU"):
        check_device("cuda", "bfloat16")


@pytest.mark.model
def test_bfloat16_scores_are_close_to_float32(backend):
    prompts = ["Is the sky blue? Answer yes or no.", "Name a fruit that is yellow.", "What is 2 + 3?",
               "Translate 'chat' from French to English."]
    targets = [[" yes", " no"], ["Banana", "A lemon"], ["5", "The answer is 5."], ["cat", "The word is cat."]]
    bf16 = load_backend(dtype="bfloat16")
    assert bf16.name.endswith("(bfloat16)")
    full, half = backend.token_logprobs(prompts, targets), bf16.token_logprobs(prompts, targets)
    diffs = [abs(a - b) for x, y in zip(full, half) for u, v in zip(x, y) for a, b in zip(u, v)]
    assert max(diffs) < BF16_TOLERANCE


AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f\n"
EPYC = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16\n"


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    from promptlens.backends.devices import cpu_native_bf16

    for text, native in ((AVX2_ONLY, False), (EPYC, True), (EPYC.replace("avx512_bf16", "amx_bf16"), True)):
        (tmp_path / "cpuinfo").write_text(text)
        assert cpu_native_bf16(tmp_path / "cpuinfo") is native


@pytest.mark.parametrize("native, picked", [(False, "float32"), (True, "bfloat16")])
def test_auto_picks_bf16_only_where_the_cpu_has_it(monkeypatch, native, picked):
    import promptlens.backends.devices as devices

    monkeypatch.setattr(devices, "cpu_native_bf16", lambda *a: native)
    assert devices.resolve_dtype("auto", "cpu") == picked
    assert devices.resolve_dtype("float32", "cpu") == "float32"


def test_bf16_on_an_emulating_cpu_warns_once_with_the_measured_reason(monkeypatch):
    import warnings

    import promptlens.backends.devices as devices
    from promptlens.errors import PromptLensWarning

    monkeypatch.setattr(devices, "cpu_native_bf16", lambda *a: False)
    with pytest.warns(PromptLensWarning, match=r"emulated .*5x slower than float32 .*12\.6 s vs 2\.34 s") as seen:
        check_device("cpu", "bfloat16")
    assert len(seen) == 1 and "\n" not in str(seen[0].message)
    monkeypatch.setattr(devices, "cpu_native_bf16", lambda *a: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_device("cpu", "bfloat16")  # native: no warning
        check_device("cpu", "float32")


def test_the_cli_prints_the_warning_as_one_line(monkeypatch, capsys):
    import warnings

    import promptlens.backends.devices as devices
    from promptlens.errors import PromptLensWarning

    saved = warnings.showwarning
    try:
        devices.show_warnings_on_one_line()
        devices.show_warnings_on_one_line()  # idempotent
        warnings.warn_explicit("bf16 is slow here", PromptLensWarning, "x.py", 1)
    finally:
        warnings.showwarning = saved
    assert capsys.readouterr().err == "promptlens: warning: bf16 is slow here\n"
