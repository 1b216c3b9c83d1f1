"""One contract, run over every backend: the test fakes, ``HFBackend`` on a tiny random Llama
(built here from a ``LlamaConfig``: nothing is downloaded), once per attention path of the
prefix-trie scorer, and ``RemoteBackend`` against the fake OpenAI server, in both request formats.

Contract of ``token_logprobs(prompts, targets)``: one row per prompt, one list per target in the
order given, one finite float per target token (the backend's own tokenizer when it has one);
a batch gives what the prompts give one at a time; an empty target is an ``InputError``; the
forward-pass counter counts calls. Then a hypothesis property: the trie scorer equals a plain
teacher-forced forward pass of the same model, on both attention paths."""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from promptlens.backends.hf import HFBackend
from promptlens.backends.remote import RemoteBackend
from promptlens.errors import InputError
from promptlens.prefix import TrieScorer

from .fakes import FakeBackend
from .openai_fake import FakeOpenAI, WordTokenizer
from .rule_backend import RuleBackend

VOCAB = 512


def tiny_llama(seed: int = 0) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def llama() -> torch.nn.Module:
    return tiny_llama()


@contextlib.contextmanager
def _backend(kind: str, llama: torch.nn.Module) -> Iterator[object]:
    if kind == "fake":
        yield FakeBackend(good_word="please")
    elif kind == "rules":
        yield RuleBackend(rules={"banana": -3.0})
    elif kind.startswith("hf-"):
        backend = HFBackend(llama, WordTokenizer(), name="tiny-llama", raw=True)
        backend.scorer = TrieScorer(llama, max_batch_tokens=64, tree_attention=kind == "hf-tree")
        yield backend
    else:
        with FakeOpenAI("both") as fake:
            yield RemoteBackend(fake.url, fake.tokenizer, raw=True, format=kind.removeprefix("remote-"))


KINDS = ["fake", "rules", "hf-tree", "hf-masked", "remote-echo", "remote-vllm"]
PROMPTS = ["Say yes or no: is a banana yellow?", "Answer please: is the sky green?", "Is snow cold?"]
TARGETS = [["yes", "no"], ["no", "not at all"], ["yes"]]


@pytest.fixture(params=KINDS)
def backend(request, llama):
    with _backend(request.param, llama) as b:
        yield b


def _n_tokens(backend: object, target: str) -> int:
    encode = getattr(backend, "encode_target", None)
    return len(encode(target)) if encode else max(1, len(target.split()))


def test_shapes_and_order(backend):
    out = backend.token_logprobs(PROMPTS, TARGETS)
    assert len(out) == len(PROMPTS)
    for row, targets in zip(out, TARGETS):
        assert len(row) == len(targets)
        for tokens, target in zip(row, targets):
            assert len(tokens) == _n_tokens(backend, target) >= 1
            assert all(isinstance(v, float) and math.isfinite(v) for v in tokens)


def test_a_batch_gives_what_the_prompts_give_one_at_a_time(backend):
    batch = backend.token_logprobs(PROMPTS, TARGETS)
    alone = [backend.token_logprobs([p], [t])[0] for p, t in zip(PROMPTS, TARGETS)]
    backwards = backend.token_logprobs(PROMPTS[::-1], TARGETS[::-1])[::-1]
    for got in (alone, backwards):
        for row_a, row_b in zip(batch, got):
            for a, b in zip(row_a, row_b):
                assert a == pytest.approx(b, abs=1e-4)


def test_an_empty_target_is_an_input_error(backend):
    with pytest.raises(InputError, match="empty"):
        backend.token_logprobs(["Is snow cold?"], [[""]])


def test_the_forward_pass_counter_counts_calls(backend):
    before = backend.forward_passes
    backend.token_logprobs(PROMPTS[:1], TARGETS[:1])
    middle = backend.forward_passes
    backend.token_logprobs(PROMPTS, TARGETS)
    assert before < middle < backend.forward_passes


# --- the trie scorer is a plain forward pass ---------------------------------------------------


def plain_logprobs(model: torch.nn.Module, seq: list[int], n: int) -> list[float]:
    """log p of the last ``n`` tokens of ``seq``, teacher-forced in one ordinary forward pass."""
    with torch.inference_mode():
        logits = model(torch.tensor([seq])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return [float(logp[i - 1, seq[i]]) for i in range(len(seq) - n, len(seq))]


_seq = st.lists(st.integers(1, VOCAB - 1), min_size=2, max_size=12)


@settings(max_examples=12, deadline=None)
@given(shared=st.lists(st.integers(1, VOCAB - 1), min_size=1, max_size=6), tails=st.lists(_seq, min_size=1, max_size=4),
       tree=st.booleans(), cap=st.sampled_from([16, 4096]))
def test_trie_scorer_equals_a_plain_forward_pass(llama, shared, tails, tree, cap):
    # A shared prefix makes the trie share work between the sequences, as a template does.
    seqs = [shared + tail for tail in tails]
    n_targets = [max(1, len(tail) // 2) for tail in tails]
    got = TrieScorer(llama, max_batch_tokens=cap, tree_attention=tree).score(seqs, n_targets)
    for seq, n, row in zip(seqs, n_targets, got):
        assert row == pytest.approx(plain_logprobs(llama, seq, n), abs=1e-4)
