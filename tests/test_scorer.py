"""The prefix-trie scorer equals a plain one-at-a-time teacher-forced forward."""

from __future__ import annotations

import pytest
import torch

from promptlens.prefix import TrieScorer, naive_token_logprobs
from promptlens.scoring import score_prompts
from promptlens.types import Case
from tests.rule_backend import RuleBackend

SENTENCES = [
    "You are a careful assistant. ",
    "Decide whether the statement is plausible. ",
    "Most statements are false. ",
    "Think step by step. ",
    "Answer with one word.",
]


def _variants() -> list[str]:
    full = "".join(SENTENCES)
    drop = ["".join(s for j, s in enumerate(SENTENCES) if j != i) for i in range(len(SENTENCES))]
    pairs = ["".join(s for j, s in enumerate(SENTENCES) if j not in (i, i + 2)) for i in range(len(SENTENCES) - 2)]
    return [full, *drop, *pairs, full]  # a duplicate on purpose


@pytest.fixture(scope="module")
def reference(backend):
    """Token sequences (variants x targets) and their plain one-at-a-time log-probs."""
    targets = ["plausible", "Yes, it is plausible because cats sit on mats."]
    seqs, n_target = [], []
    for v in _variants():
        for t in targets:
            p, tt = backend.encode_prompt(v), backend.encode_target(t)
            seqs.append(p + tt)
            n_target.append(len(tt))
    return seqs, n_target, [naive_token_logprobs(backend.model, s, n) for s, n in zip(seqs, n_target)]


@pytest.mark.model
@pytest.mark.parametrize(("max_batch_tokens", "tree_attention"), [(16, True), (100, False), (4096, True), (4096, False)],
                         ids=["16-tree", "100-dense", "4096-tree", "4096-dense"])
def test_trie_scorer_equals_naive_forward(backend, reference, max_batch_tokens, tree_attention):
    seqs, n_target, refs = reference
    scorer = TrieScorer(backend.model, max_batch_tokens=max_batch_tokens, tree_attention=tree_attention)
    assert scorer.tree_attention == tree_attention
    got = scorer.score(seqs, n_target)
    worst = 0.0
    for n, row, ref in zip(n_target, got, refs):
        assert len(row) == n
        worst = max(worst, max(abs(a - b) for a, b in zip(row, ref)))
    assert worst < 1e-4
    # Every trie token runs through the body once: fewer than the naive total.
    assert scorer.tokens_computed < sum(len(s) for s in seqs) / 2


@pytest.mark.model
def test_choice_scores_on_real_model(backend):
    case = Case({}, "plausible", ("plausible", "implausible"))
    [[score]] = score_prompts(backend, [["Is 'the cat sat on the mat' plausible or implausible? Answer:"]], [case])
    lp = {c: backend.token_logprobs(["Is 'the cat sat on the mat' plausible or implausible? Answer:"], [[c]])[0][0] for c in case.choices}
    assert score.choice_logprobs == pytest.approx([sum(lp["plausible"]), sum(lp["implausible"])], abs=1e-4)
    assert score.margin == pytest.approx(sum(lp["plausible"]) - sum(lp["implausible"]), abs=1e-4)
    assert score.correct == (score.margin > 0)


def test_choice_scoring_on_fake_backend():
    fake = RuleBackend(bonus={("cats", "plausible"): 2.0, ("dogs", "maybe"): 5.0})
    cases = [
        Case({}, "plausible", ("plausible", "implausible", "maybe")),
        Case({}, "implausible", ("plausible", "implausible", "maybe")),
    ]
    scores = score_prompts(fake, [["cats", "cats"], ["dogs", "dogs"]], cases)
    first, second = scores[0]
    assert first.choice_logprobs == (1.0, -1.0, -1.0)
    assert first.correct and first.margin == 2.0
    assert not second.correct and second.margin == -2.0
    dogs = scores[1][0]
    assert dogs.choice_logprobs == (-1.0, -1.0, 4.0) and dogs.margin == -5.0 and not dogs.correct


@pytest.mark.model
def test_out_of_memory_bin_is_split_and_the_run_goes_on(backend, reference, monkeypatch):
    seqs, n_target, refs = reference
    scorer = TrieScorer(backend.model, max_batch_tokens=4096)
    real_run = scorer._run

    def picky(batch, out):  # pretend any bin of more than 3 chains does not fit in memory
        if len(batch) > 3:
            raise torch.OutOfMemoryError("simulated")
        real_run(batch, out)

    monkeypatch.setattr(scorer, "_run", picky)
    got = scorer.score(seqs, n_target)
    assert scorer.max_batch_tokens < 4096
    assert max(abs(a - b) for row, ref in zip(got, refs) for a, b in zip(row, ref)) < 1e-4


def test_network_is_never_touched(monkeypatch):
    """Attribution on the fake backend opens no socket (the real model: test_network.py)."""
    import socket

    from promptlens.attribution import attribute
    from tests.rule_backend import RuleBackend

    def refuse(self, address):
        raise AssertionError(f"network connection attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    attribute("Say yes. Say banana.", "yes", backend=RuleBackend(rules={"banana": -1.0}))


def test_tree_attention_only_for_plain_causal_attention():
    from transformers import Gemma2Config, LlamaConfig, MistralConfig

    from promptlens.prefix import tree_supported

    assert tree_supported(LlamaConfig())
    assert not tree_supported(MistralConfig(sliding_window=4096))
    assert tree_supported(MistralConfig(sliding_window=None))
    assert not tree_supported(Gemma2Config())  # logit soft-capping and a sliding window


# --- out of memory: a bin that does not fit is split; one sequence that does not is a clear error ---


@pytest.fixture(scope="module")
def tiny_lm():
    """A random two-layer Llama small enough to build in a blink (no weights are read)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
           "you tried to allocate 100000000000000 bytes. Error code 12 (Cannot allocate memory)")


@pytest.mark.parametrize("error", [lambda: RuntimeError(CPU_OOM), lambda: MemoryError(),
                                   lambda: __import__("torch").OutOfMemoryError("CUDA out of memory")],
                         ids=["cpu-allocator", "MemoryError", "cuda"])
def test_a_batch_out_of_memory_is_split_and_the_run_goes_on(tiny_lm, monkeypatch, error):
    from promptlens.prefix import TrieScorer

    seqs = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 7, 8], [1, 9, 10, 11], [1, 2, 12, 13, 14, 15, 16]]
    n_targets = [2, 2, 1, 3]
    expected = TrieScorer(tiny_lm, max_batch_tokens=4096).score(seqs, n_targets)
    scorer = TrieScorer(tiny_lm, max_batch_tokens=4096)
    real_run, sizes = scorer._run, []

    def picky(batch, out):  # any bin of more than one chain "does not fit"
        sizes.append(len(batch))
        if len(batch) > 1:
            raise error()
        real_run(batch, out)

    monkeypatch.setattr(scorer, "_run", picky)
    got = scorer.score(seqs, n_targets)
    assert max(sizes) > 1 and scorer.max_batch_tokens < 4096
    assert [len(r) for r in got] == n_targets
    assert [v for r in got for v in r] == pytest.approx([v for r in expected for v in r], abs=1e-5)


def test_out_of_memory_on_a_single_sequence_is_a_clear_error(tiny_lm, monkeypatch):
    from promptlens.errors import PromptLensError
    from promptlens.prefix import TrieScorer

    scorer = TrieScorer(tiny_lm)

    def never_fits(batch, out):
        raise RuntimeError(CPU_OOM)

    monkeypatch.setattr(scorer, "_run", never_fits)
    with pytest.raises(PromptLensError, match=r"out of memory scoring one sequence of \d+ tokens on its own; "
                                              "shorten the prompt or the cases, or free memory"):
        scorer.score([[1, 2, 3]], [1])


def test_other_runtime_errors_are_not_taken_for_out_of_memory(tiny_lm, monkeypatch):
    from promptlens.prefix import TrieScorer

    scorer = TrieScorer(tiny_lm)
    monkeypatch.setattr(scorer, "_run", lambda batch, out: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        scorer.score([[1, 2, 3], [1, 4, 5]], [1, 1])


def _naive_all(lm, seqs, n_targets):
    return [naive_token_logprobs(lm, s, n) for s, n in zip(seqs, n_targets)]


def _close(got, want, tol=1e-5):
    return max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w)) < tol


def test_kept_prefixes_give_the_plain_forward_and_skip_the_shared_tokens(tiny_lm):
    """A trial's minibatch, then the rest of its cases, then another trial that shares only the
    start: each call equals the plain forward, and the later calls do not recompute what the
    earlier ones shared."""
    system = [1, 2, 3, 4, 5, 6, 7, 8]
    template = system + [9, 10, 11]
    cases = [[20 + i, 30 + i] for i in range(6)]
    labels = [[40], [41, 42]]

    def calls(tmpl, which):
        seqs = [tmpl + c + lab for c in which for lab in labels]
        return seqs, [len(lab) for _ in which for lab in labels]

    plain = TrieScorer(tiny_lm, max_batch_tokens=12)
    scorer = TrieScorer(tiny_lm, max_batch_tokens=12)
    other = system + [12, 13]
    seen: list[int] = []
    with scorer.keep_prefixes():
        for tmpl, which in ((template, cases[:2]), (template, cases[2:]), (other, cases[:3]), (other, cases[3:])):
            seqs, n = calls(tmpl, which)
            before, computed = scorer.tokens_reused, scorer.tokens_computed
            got = scorer.score(seqs, n)
            assert _close(got, _naive_all(tiny_lm, seqs, n))
            assert _close(got, plain.score(seqs, n))
            reused = scorer.tokens_reused - before
            # The first call has nothing kept; the rest of a trial reuses its template, the next
            # trial the system prompt it shares with the template.
            assert reused == {0: 0, 1: len(template), 2: len(system), 3: len(other)}[len(seen)]
            assert scorer.tokens_computed - computed == len({tuple(s[:i]) for s in seqs for i in range(1, len(s) + 1)}) - reused
            seen.append(reused)
        assert scorer.tokens_computed < plain.tokens_computed
        assert scorer.kept  # the shared prefixes, for the next call
    assert not scorer.kept  # nothing outlives the block


def test_kept_keys_never_stand_in_for_a_needed_output(tiny_lm):
    """A later call whose target starts inside a kept prefix: those positions are computed."""
    scorer = TrieScorer(tiny_lm, max_batch_tokens=64)
    long = [[1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8, 10]]
    short = [[1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6, 7, 11]]  # the first's target (4, 5) lies in the kept prefix
    with scorer.keep_prefixes():
        scorer.score(long, [1, 1])
        got = scorer.score(short, [2, 3])
    assert _close(got, _naive_all(tiny_lm, short, [2, 3]))
    assert scorer.tokens_reused == 2  # positions 0-1: before the first needed output (position 2)


def test_kept_prefixes_are_bounded(tiny_lm):
    scorer = TrieScorer(tiny_lm, max_batch_tokens=64)
    per_token = 2 * 2 * 2 * 8 * 4  # layers x (k, v) x kv heads x head dim x fp32 bytes
    with scorer.keep_prefixes(max_bytes=10 * per_token):
        for start in range(5):
            seqs = [[start + 1] + list(range(20, 26)) + [t] for t in (40, 41)]
            scorer.score(seqs, [1, 1])
        assert sum(len(t) for t, _ in scorer.kept) <= 10
        assert scorer.kept[-1][0][0] == 5  # the most recent stays


@pytest.mark.model
def test_kept_prefixes_on_the_real_model(backend):
    """A trial's minibatch then the rest, through the embedded model with prefixes kept: each call
    equals plain one-at-a-time forwards, and the second call reuses the template's start."""
    template = "Decide whether the statement is plausible. Most statements are false. Statement: "
    cases = [" cats sit on mats", " fish climb trees", " dogs bark"]
    labels = ["plausible", "implausible"]
    scorer = TrieScorer(backend.model, max_batch_tokens=1024)
    with scorer.keep_prefixes():
        for part in (cases[:1], cases[1:]):
            seqs, n = [], []
            for c in part:
                for lab in labels:
                    p, t = backend.encode_prompt(template + c), backend.encode_target(lab)
                    seqs.append(p + t)
                    n.append(len(t))
            before = scorer.tokens_reused
            got = scorer.score(seqs, n)
            assert _close(got, _naive_all(backend.model, seqs, n), tol=1e-4)
        assert scorer.tokens_reused - before > 10  # the chat header and the template's start


def test_lone_chains_with_little_past_run_causal_and_equal_the_naive_forward(tiny_lm, monkeypatch):
    """A chain alone in its attention group that sees fewer past keys than it has tokens runs as
    plain causal attention behind blank rows; the rest under the mask. Both give the plain forward."""
    import promptlens.prefix as prefix

    made: list[int | None] = []
    build = prefix._TreePlan._group

    def recording(items, device):
        group = build(items, device)
        made.append(group.lead)
        return group

    monkeypatch.setattr(prefix._TreePlan, "_group", staticmethod(recording))
    # A 60-token chain on a 2-token root (alone: padding a short chain to it costs more than a
    # call), and short chains, which share a masked call.
    seqs = [[1, 2] + [3 + i % 40 for i in range(60)], [1, 2, 45, 46, 47], [1, 2, 45, 48], [1, 5, 6]]
    n = [3, 2, 1, 1]
    got = TrieScorer(tiny_lm, max_batch_tokens=4096, tree_attention=True).score(seqs, n)
    assert _close(got, _naive_all(tiny_lm, seqs, n))
    assert any(lead is not None for lead in made) and None in made  # both kernels ran
