"""Exact batched teacher-forced scoring that computes each shared token prefix once.

Attribution and repair score many sequences that share long prefixes: the chat template's
system prompt is in all of them, ablation variant i equals the original up to segment i, every
case of a template shares the text before its first field, and the choices of a case share the
whole prompt. We put all token sequences in a radix trie and cut it into chains by heavy-path
decomposition (each node continues into its largest child; the other children start new
chains). A chain is one row of a batch: it is run once, on top of the key/value cache of the
chains it branches off, so every trie token goes through the model exactly once. Chains of the
same depth run together in padded batches.

Each row of a batch has its own prefix length, so the past cache is left-aligned with a hole
between the row's prefix and the padded end of the past, masked out, and the row's new tokens
get explicit position ids. The output layer runs only at the positions that predict a target
token. The result equals a plain one-at-a-time forward up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from transformers import DynamicCache


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
        chain = _Chain(node.start, parent, parent.depth + 1 if parent else 0)
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


def _prefix_kv(chain: _Chain) -> torch.Tensor | None:
    """The cached keys/values of every position before ``chain.start``, from its ancestors."""
    parts, need, parent = [], chain.start, chain.parent
    while parent is not None and need > 0:
        parts.append(parent.kv[:, :, :, : need - parent.start])
        need, parent = parent.start, parent.parent
    return torch.cat(parts[::-1], dim=3) if parts else None


class TrieScorer:
    """Teacher-forced log-probs of target tokens for many token sequences, sharing prefixes."""

    def __init__(self, model: torch.nn.Module, *, max_batch_tokens: int = 2048) -> None:
        self.model = model
        self.body = model.base_model
        self.head = model.get_output_embeddings()
        self.max_batch_tokens = max_batch_tokens
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        self.forward_passes = 0
        self.tokens_computed = 0  # real (non-padding) positions run through the model body
        self.positions_padded = 0  # padding positions run alongside them

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
            wave = sorted(by_depth[depth], key=lambda c: (len(c.tokens), c.start))
            for batch in self._batches(wave):
                self._run(batch, out)
            for chain in chains:
                if chain.last_depth == depth:
                    chain.kv = None  # every chain that needs it is done
        return out

    def _batches(self, wave: list[_Chain]) -> list[list[_Chain]]:
        batches, current = [], []
        for chain in wave:  # sorted by length: the newest chain sets the padded width
            if current and len(chain.tokens) * (len(current) + 1) > self.max_batch_tokens:
                batches.append(current)
                current = []
            current.append(chain)
        return batches + [current] if current else batches

    def _run(self, batch: list[_Chain], out: list[list[float]]) -> None:
        device = self.head.weight.device
        rows, width = len(batch), max(len(c.tokens) for c in batch)
        past_len = max(c.start for c in batch)
        ids = torch.zeros(rows, width, dtype=torch.long)
        starts = torch.tensor([c.start for c in batch])
        for r, chain in enumerate(batch):
            ids[r, : len(chain.tokens)] = torch.tensor(chain.tokens)
        positions = starts[:, None] + torch.arange(width)[None, :]
        # Row r sees its own prefix [0, start_r) of the past, then its new tokens causally.
        keys = torch.arange(past_len + width)
        sees_past = keys[None, None, :] < starts[:, None, None]
        causal = (keys[None, :] >= past_len) & (keys[None, :] - past_len <= torch.arange(width)[:, None])
        mask = (sees_past | causal[None]).unsqueeze(1)  # [rows, 1, width, past_len + width]
        if getattr(self.model.config, "_attn_implementation", "sdpa") == "eager":
            dtype = self.head.weight.dtype
            mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)

        cache = DynamicCache()
        if past_len:
            first = next(c for c in batch if c.start)
            layers, _, kv_heads, _, head_dim = first.parent.kv.shape
            past = torch.zeros(layers, 2, rows, kv_heads, past_len, head_dim, dtype=first.parent.kv.dtype, device=device)
            for r, chain in enumerate(batch):
                if chain.start:
                    past[:, :, r, :, : chain.start] = _prefix_kv(chain)
            cache = DynamicCache([(past[layer, 0], past[layer, 1]) for layer in range(layers)])

        hidden = self.body(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            cache=cache,
            use_cache=True,
        ).last_hidden_state
        self.forward_passes += 1
        real = sum(len(c.tokens) for c in batch)
        self.tokens_computed += real
        self.positions_padded += rows * width - real

        if any(c.has_children for c in batch):
            kv = torch.stack([torch.stack([layer.keys, layer.values]) for layer in cache.layers])
            for r, chain in enumerate(batch):
                if chain.has_children:
                    chain.kv = kv[:, :, r, :, past_len : past_len + len(chain.tokens)].clone()

        requests = [(r, *req) for r, chain in enumerate(batch) for req in chain.requests]
        if not requests:
            return
        index = torch.tensor([[r, off] for r, off, *_ in requests])
        logits = self.head(hidden[index[:, 0], index[:, 1]]).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        tokens = torch.tensor([tok for _, _, tok, _, _ in requests], device=device)
        logprobs = (logits.gather(1, tokens[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)).tolist()
        for (_, _, _, s, k), lp in zip(requests, logprobs):
            out[s][k] = lp


@torch.inference_mode()
def naive_token_logprobs(model: torch.nn.Module, seq: Sequence[int], n_target: int) -> list[float]:
    """Reference: one plain forward over the whole sequence, log-softmax at every position."""
    ids = torch.tensor([list(seq)], device=model.get_output_embeddings().weight.device)
    logits = model(input_ids=ids).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    n = len(seq)
    return [logprobs[p, seq[p + 1]].item() for p in range(n - n_target - 1, n - 1)]
