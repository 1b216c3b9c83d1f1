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
    ("cpu", "float64", "unknown dtype 'float64'; choose one of: float32, bfloat16, float16"),
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
