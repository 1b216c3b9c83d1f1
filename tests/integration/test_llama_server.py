"""The remote backend against a real llama-cpp-python server (built from PyPI) serving the
embedded SmolLM2 GGUF on loopback: its scores agree with the local backend's.

The local backend runs the GGUF's weights de-quantized to float32; llama.cpp multiplies the
Q4_1 weights with activations quantized to 8 bits, so the two differ a little. Measured on the
workload below (16 prompts, 28 targets, 60 target tokens; llama-cpp-python 0.3.36): max |diff|
0.41 nats per token (mean 0.07), 0.56 nats per target; the bounds are about 2x those maxima.
"""

from __future__ import annotations

import json

import pytest

from promptlens.attribution import attribute
from promptlens.backends.remote import remote_backend
from promptlens.config import load_recipe
from promptlens.errors import BackendError, InputError
from promptlens.scoring import continuations
from promptlens.segments import fill

from .conftest import start_llama_server, stop

pytestmark = pytest.mark.integration

TOKEN_TOLERANCE = 0.8  # nats, any one target token
SEQUENCE_TOLERANCE = 1.1  # nats, a whole target

FREE = [("Name a fruit that is yellow.", "A banana is yellow."),
        ("What is the capital of France?", "The capital of France is Paris."),
        ("Write the numbers from one to five.", "1, 2, 3, 4, 5"),
        ("Say hello in Spanish.", "Hola! ¿Cómo estás?")]


def workload(n_cases: int = 12) -> tuple[list[str], list[tuple[str, ...]]]:
    recipe = load_recipe("recipes/entailed_polarity_quick.yaml")
    cases = list(recipe.cases)[:n_cases]
    prompts = [fill(recipe.template, c.vars) for c in cases] + [p for p, _ in FREE]
    targets = [continuations(c) for c in cases] + [(t,) for _, t in FREE]
    return prompts, targets


def test_remote_scores_agree_with_the_local_backend(llama_server, backend):
    remote = remote_backend(llama_server, concurrency=2)
    prompts, targets = workload()
    local, far = backend.token_logprobs(prompts, targets), remote.token_logprobs(prompts, targets)
    assert remote.format == "echo"
    tokens, sequences = [], []
    for lrow, rrow in zip(local, far):
        for l, r in zip(lrow, rrow):
            assert len(l) == len(r)  # the same tokens: no seam merged in this workload
            tokens += [abs(a - b) for a, b in zip(l, r)]
            sequences.append(abs(sum(l) - sum(r)))
    figures = {"prompts": len(prompts), "targets": len(sequences), "tokens": len(tokens),
               "max_token_diff": max(tokens), "mean_token_diff": sum(tokens) / len(tokens),
               "max_sequence_diff": max(sequences), "seam_merges": remote.seam_merges,
               "requests": remote.forward_passes}
    print("\nremote vs local:", json.dumps(figures))
    assert remote.seam_merges == 0
    assert max(tokens) < TOKEN_TOLERANCE and max(sequences) < SEQUENCE_TOLERANCE


def test_attribution_on_the_server_and_ig_refused(llama_server):
    remote = remote_backend(llama_server)
    result = attribute("Answer with yes or no. Is the sky blue?", " yes", backend=remote)
    assert len(result.features) == 2 and result.forward_passes > 0
    with pytest.raises(InputError, match="ablation, shapley, lime, kernelshap"):
        attribute("Answer with yes or no. Is the sky blue?", " yes", backend=remote, method="ig")
    assert remote.generate("Say hello.", max_new_tokens=8)


def test_a_server_without_logits_all_is_refused_up_front():
    proc, url = start_llama_server("--logits_all", "false")
    try:
        with pytest.raises(BackendError, match="does not report log-probs of prompt tokens"):
            remote_backend(url, retries=0).token_logprobs(["Hi."], [[" Hello"]])
    finally:
        stop(proc)


def test_raw_prompts_on_llama_cpp_python_are_refused_not_misread(llama_server):
    """Without BOS at the start, llama-cpp-python's echo log-probs are one position late
    (abetlen/llama-cpp-python#1983); the backend notices and refuses rather than return them."""
    with pytest.raises(BackendError, match="shifted by one position"):
        remote_backend(llama_server, raw=True).token_logprobs(["1, 2, 3, 4,"], [[" 5"]])
