"""Exact batched teacher-forced scoring that computes each shared token prefix once.

Attribution and repair score many sequences that share long prefixes: the chat template's
system prompt is in all of them, ablation variant i equals the original up to segment i, every
case of a template shares the text before its first field, and the choices of a case share the
whole prompt. We put all token sequences in a radix trie and cut it into chains by heavy-path
decomposition (each node continues into its largest child; the other children start new
chains). A chain is one row of a batch: it is run once, on top of the key/value cache of the
chains it branches off, so every trie token goes through the model exactly once. Chains of the
same depth run together, packed back to back into one row (no padding: on a CPU a padded
position costs as much as a real one). The past cache holds each needed ancestor once; a mask
lets every chain see exactly its own ancestry and itself causally, and explicit position ids
put its tokens at their true positions. The output layer runs only at the positions that
predict a target token. The result equals a plain one-at-a-time forward up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from transformers import DynamicCache

from .errors import PromptLensError


@dataclass(eq=False)
class _Node:
    tokens: list[int]
    start: int  # absolute position of tokens[0]
    parent: _Node | None
    children: dict[int, _Node] = field(default_factory=dict)
    weight: int = 0  # tokens in this subtree
    chain: _Chain | None = None
    offset: int = 0  # position of tokens[0] inside its chain


@dataclass(eq=False)
class _Chain:
    start: int  # absolute position of tokens[0]: the length of the cached prefix it runs on
    parent: _Chain | None
    depth: int
    index: int  # creation order: a deterministic sort key
    tokens: list[int] = field(default_factory=list)
    has_children: bool = False
    last_depth: int = 0  # deepest chain that branches off this one, directly or not
    kv: torch.Tensor | None = None  # [layers, 2, kv_heads, len(tokens), head_dim]
    requests: list[tuple[int, int, int, int]] = field(default_factory=list)  # (offset, token, seq, k)


def _insert(root: _Node, seq: Sequence[int]) -> None:
    node, i = root, 0
    while i < len(seq):
        child = node.children.get(seq[i])
        if child is None:
            node.children[seq[i]] = _Node(list(seq[i:]), i, node)
            return
        k, limit = 1, min(len(child.tokens), len(seq) - i)
        while k < limit and child.tokens[k] == seq[i + k]:
            k += 1
        if k < len(child.tokens):  # split the edge where seq leaves it
            mid = _Node(child.tokens[:k], child.start, node, {child.tokens[k]: child})
            node.children[seq[i]] = mid
            child.tokens, child.start, child.parent = child.tokens[k:], child.start + k, mid
            child = mid
        node, i = child, i + k


def _chains(root: _Node) -> list[_Chain]:
    order, stack = [], [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children.values())
    for node in reversed(order):
        node.weight = len(node.tokens) + sum(c.weight for c in node.children.values())

    chains: list[_Chain] = []
    starts: list[tuple[_Node, _Chain | None]] = [(c, None) for c in root.children.values()]
    while starts:
        node, parent = starts.pop()
        chain = _Chain(node.start, parent, parent.depth + 1 if parent else 0, len(chains))
        chains.append(chain)
        while True:
            node.chain, node.offset = chain, len(chain.tokens)
            chain.tokens.extend(node.tokens)
            if not node.children:
                break
            heavy = max(node.children.values(), key=lambda c: c.weight)
            for child in node.children.values():
                if child is not heavy:
                    starts.append((child, chain))
                    chain.has_children = True
            node = heavy
    for chain in reversed(chains):  # children come after their parents in this list
        chain.last_depth = max(chain.last_depth, chain.depth)
        if chain.parent is not None:
            chain.parent.last_depth = max(chain.parent.last_depth, chain.last_depth)
    return chains


def _attach_requests(root: _Node, seqs: Sequence[Sequence[int]], n_targets: Sequence[int]) -> None:
    """Hand each target token's prediction to the chain that computes the position before it."""
    for s, (seq, n) in enumerate(zip(seqs, n_targets)):
        first = len(seq) - n - 1  # the position predicting the first target token
        node, i = root, 0
        while i < len(seq):
            node = node.children[seq[i]]
            end = node.start + len(node.tokens)
            for p in range(max(first, node.start), min(end, len(seq) - 1)):
                node.chain.requests.append((node.offset + p - node.start, seq[p + 1], s, p - first))
            i = end


def _ancestry(chain: _Chain) -> list[tuple[_Chain, int]]:
    """(ancestor, tokens of it needed) pairs that together hold every position before ``chain.start``."""
    pairs, need, parent = [], chain.start, chain.parent
    while parent is not None and need > 0:
        pairs.append((parent, need - parent.start))
        need, parent = parent.start, parent.parent
    return pairs


def _out_of_memory(exc: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; the CPU allocator a plain RuntimeError saying so."""
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "can't allocate memory" in str(exc) \
        or "not enough memory" in str(exc)


class TrieScorer:
    """Teacher-forced log-probs of target tokens for many token sequences, sharing prefixes."""

    def __init__(self, model: torch.nn.Module, *, max_batch_tokens: int = 2048) -> None:
        self.model = model
        self.body = model.base_model
        self.head = model.get_output_embeddings()
        self.max_batch_tokens = max_batch_tokens
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        self.forward_passes = 0
        self.tokens_computed = 0  # positions run through the model body (there is no padding)

    @torch.inference_mode()
    def score(self, seqs: Sequence[Sequence[int]], n_targets: Sequence[int]) -> list[list[float]]:
        """``out[s][k]`` = log p(seqs[s][-n+k] | seqs[s][:-n+k]) with ``n = n_targets[s]``."""
        for seq, n in zip(seqs, n_targets):
            if not 0 < n < len(seq):
                raise ValueError("each sequence needs at least one prompt token and one target token")
        root = _Node([], 0, None)
        for seq in seqs:
            _insert(root, seq)
        chains = _chains(root)
        _attach_requests(root, seqs, n_targets)
        out = [[0.0] * n for n in n_targets]
        by_depth: dict[int, list[_Chain]] = {}
        for chain in chains:
            by_depth.setdefault(chain.depth, []).append(chain)
        for depth in sorted(by_depth):
            # Chains with the same ancestry side by side, so a bin's past holds few ancestors.
            wave = sorted(by_depth[depth], key=lambda c: (c.parent.index if c.parent else -1, c.start))
            for batch in self._batches(wave):
                self._run_splitting(batch, out)
            for chain in chains:
                if chain.last_depth == depth:
                    chain.kv = None  # every chain that needs it is done
        return out

    def _run_splitting(self, batch: list[_Chain], out: list[list[float]]) -> None:
        """Run a bin; if it runs out of memory, halve the bin size for good and go on."""
        try:
            self._run(batch, out)
        except (RuntimeError, MemoryError) as exc:
            if not _out_of_memory(exc):
                raise
            if len(batch) == 1:
                tokens = batch[0].start + len(batch[0].tokens)
                raise PromptLensError(f"out of memory scoring one sequence of {tokens} tokens on its own; "
                                      "shorten the prompt or the cases, or free memory") from exc
            self.max_batch_tokens = max(1, self.max_batch_tokens // 2)
            half = len(batch) // 2
            self._run_splitting(batch[:half], out)
            self._run_splitting(batch[half:], out)

    def _batches(self, wave: list[_Chain]) -> list[list[_Chain]]:
        """Pack chains into bins of at most ``max_batch_tokens`` tokens (a longer chain runs alone)."""
        batches, current, size = [], [], 0
        for chain in wave:
            if current and size + len(chain.tokens) > self.max_batch_tokens:
                batches.append(current)
                current, size = [], 0
            current.append(chain)
            size += len(chain.tokens)
        return batches + [current] if current else batches

    def _run(self, batch: list[_Chain], out: list[list[float]]) -> None:
        """One forward over the chains of ``batch`` packed into a single row, no padding.

        The past holds each ancestor chain's cached keys/values once (as far as any chain of
        the batch needs them); each chain's tokens see exactly its own ancestry in the past and
        themselves causally, at their true positions.
        """
        device = self.head.weight.device
        ancestry = [_ancestry(chain) for chain in batch]
        needed: dict[int, tuple[_Chain, int]] = {}
        for pairs in ancestry:
            for anc, upto in pairs:
                if upto > needed.get(id(anc), (anc, 0))[1]:
                    needed[id(anc)] = (anc, upto)
        offsets, past_len = {}, 0
        for key, (anc, upto) in needed.items():
            offsets[key] = past_len
            past_len += upto
        n_new = sum(len(c.tokens) for c in batch)
        mask = torch.zeros(n_new, past_len + n_new, dtype=torch.bool)
        ids = torch.empty(n_new, dtype=torch.long)
        positions = torch.empty(n_new, dtype=torch.long)
        rows, q = [], 0
        for chain, pairs in zip(batch, ancestry):
            n = len(chain.tokens)
            ids[q : q + n] = torch.tensor(chain.tokens)
            positions[q : q + n] = chain.start + torch.arange(n)
            for anc, upto in pairs:
                mask[q : q + n, offsets[id(anc)] : offsets[id(anc)] + upto] = True
            mask[q : q + n, past_len + q : past_len + q + n] = torch.ones(n, n, dtype=torch.bool).tril()
            rows.append(q)
            q += n
        mask = mask[None, None]
        if getattr(self.model.config, "_attn_implementation", "sdpa") == "eager":
            dtype = self.head.weight.dtype
            mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)

        cache = DynamicCache()
        if past_len:
            past = torch.cat([anc.kv[:, :, :, :upto] for anc, upto in needed.values()], dim=3)
            cache = DynamicCache([(past[layer, 0][None], past[layer, 1][None]) for layer in range(past.shape[0])])
        hidden = self.body(
            input_ids=ids[None].to(device),
            attention_mask=mask.to(device),
            position_ids=positions[None].to(device),
            cache=cache,
            use_cache=True,
        ).last_hidden_state[0]
        self.forward_passes += 1
        self.tokens_computed += n_new

        if any(c.has_children for c in batch):
            # Only this bin's new positions: the past part of the cache is already held by its owners.
            kv = torch.stack([torch.stack([layer.keys[0, :, past_len:], layer.values[0, :, past_len:]])
                              for layer in cache.layers])
            for q0, chain in zip(rows, batch):
                if chain.has_children:
                    n = len(chain.tokens)
                    chain.kv = kv[:, :, :, q0 : q0 + n].clone()

        requests = [(q0 + off, tok, s, k) for q0, chain in zip(rows, batch) for off, tok, s, k in chain.requests]
        if not requests:
            return
        logits = self.head(hidden[torch.tensor([r[0] for r in requests], device=device)]).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        tokens = torch.tensor([r[1] for r in requests], device=device)
        logprobs = (logits.gather(1, tokens[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)).tolist()
        for (_, _, s, k), lp in zip(requests, logprobs):
            out[s][k] = lp


@torch.inference_mode()
def naive_token_logprobs(model: torch.nn.Module, seq: Sequence[int], n_target: int) -> list[float]:
    """Reference: one plain forward over the whole sequence, log-softmax at every position."""
    ids = torch.tensor([list(seq)], device=model.get_output_embeddings().weight.device)
    logits = model(input_ids=ids).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    n = len(seq)
    return [logprobs[p, seq[p + 1]].item() for p in range(n - n_target - 1, n - 1)]
