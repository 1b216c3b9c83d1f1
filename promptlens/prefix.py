"""Exact batched teacher-forced scoring that computes each shared token prefix once.

Attribution and repair score many sequences that share long prefixes: the chat template's
system prompt is in all of them, ablation variant i equals the original up to segment i, every
case of a template shares the text before its first field, and the choices of a case share the
whole prompt. We put all token sequences in a radix trie and cut it into chains by heavy-path
decomposition (each node continues into its largest child; the other children start new
chains), so every trie token goes through the model exactly once. Chains, parents first, are
packed back to back into bins of a few hundred tokens (no padding: on a CPU a padded position
costs as much as a real one); a chain runs on top of the cached keys/values of the ancestors
that ran in earlier bins, and sees ancestors in its own bin as one causal sequence does. Explicit
position ids put its tokens at their true positions.

Attention is split by chain ("tree attention"): each chain's queries meet only its ancestry's
keys and its own, causally, in a few batched calls over chains of similar size. A single call
over the whole bin under a mask would spend most of its work on masked pairs (3-7x the useful
work in attribution); models whose attention is not plain causal attention (sliding windows,
capped logits) take that masked path instead. The output layer runs only at the positions that
predict a target token. The result equals a plain one-at-a-time forward up to float rounding.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import CacheLayerMixin

from . import progress
from .errors import PromptLensError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel


@dataclass(eq=False)
class _Node:
    tokens: list[int]
    start: int  # absolute position of tokens[0]
    parent: _Node | None
    children: dict[int, _Node] = field(default_factory=dict)
    weight: int = 0  # tokens in this subtree
    chain: _Chain | None = None
    offset: int = 0  # position of tokens[0] inside its chain
    kv: torch.Tensor | None = None  # [layers, 2, kv_heads, len(tokens), head_dim] kept from an earlier call


@dataclass(eq=False)
class _Chain:
    start: int  # absolute position of tokens[0]: the length of the cached prefix it runs on
    parent: _Chain | None
    tokens: list[int] = field(default_factory=list)
    ancestry: list[tuple[_Chain, int]] = field(default_factory=list)  # (ancestor, its tokens this one sees)
    users: int = 0  # chains not yet run whose ancestry holds this one
    kv: torch.Tensor | None = None  # [layers, 2, kv_heads, len(tokens), head_dim]
    requests: list[tuple[int, int, int, int]] = field(default_factory=list)  # (offset, token, seq, k)
    hidden: tuple[tuple[int, int], ...] = ()  # absolute [start, end) ranges of its ancestry it must not see
    done: bool = False  # its keys and values were kept from an earlier call: it does not run
    keep: bool = False  # hold ``kv`` past its last user (the call's shared prefix, to be kept)

    def cached(self) -> torch.Tensor:
        """``kv``, which a chain holds from its own run until the last chain that needs it has run."""
        if self.kv is None:
            raise RuntimeError("a chain ran before an ancestor whose keys and values it needs")
        return self.kv


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
        chain = _Chain(node.start, parent, done=node.kv is not None)
        chains.append(chain)
        kept = []
        while True:
            node.chain, node.offset = chain, len(chain.tokens)
            chain.tokens.extend(node.tokens)
            if node.kv is not None:
                kept.append(node.kv)
            if not node.children:
                break
            heavy = max(node.children.values(), key=lambda c: c.weight)
            same = (heavy.kv is not None) == chain.done  # a chain either runs or reuses kept keys, never both
            for child in node.children.values():
                if child is not heavy or not same:
                    starts.append((child, chain))
            if not same:
                break
            node = heavy
        if chain.done:
            chain.kv = kept[0] if len(kept) == 1 else torch.cat(kept, dim=3)
    return chains


def _attach_requests(root: _Node, seqs: Sequence[Sequence[int]], n_targets: Sequence[int]) -> None:
    """Hand each target token's prediction to the chain that computes the position before it."""
    for s, (seq, n) in enumerate(zip(seqs, n_targets)):
        first = len(seq) - n - 1  # the position predicting the first target token
        node, i = root, 0
        while i < len(seq):
            node = node.children[seq[i]]
            if node.chain is None:
                raise RuntimeError("_chains gives every node below the root a chain; run it first")
            end = node.start + len(node.tokens)
            for p in range(max(first, node.start), min(end, len(seq) - 1)):
                node.chain.requests.append((node.offset + p - node.start, seq[p + 1], s, p - first))
            i = end


def _first_needed(root: _Node, seqs: Sequence[Sequence[int]], n_targets: Sequence[int]) -> dict[int, int]:
    """Per node (by id): the smallest position that a sequence through it needs the output of
    (the one predicting its first target token). Kept keys may stand in only for positions before."""
    first: dict[int, int] = {}
    for seq, n in zip(seqs, n_targets):
        f, node, i = len(seq) - n - 1, root, 0
        while i < len(seq):
            node = node.children[seq[i]]
            first[id(node)] = min(first.get(id(node), f), f)
            i = node.start + len(node.tokens)
    return first


def _split(node: _Node, k: int) -> _Node:
    """Cut ``node`` after its first ``k`` tokens; returns the new upper part (its parent's child now)."""
    parent = node.parent
    if parent is None:
        raise RuntimeError("the root has no tokens to split")
    mid = _Node(node.tokens[:k], node.start, parent, {node.tokens[k]: node})
    parent.children[node.tokens[0]] = mid
    if node.kv is not None:
        mid.kv, node.kv = node.kv[:, :, :, :k], node.kv[:, :, :, k:]
    node.tokens, node.start, node.parent = node.tokens[k:], node.start + k, mid
    return mid


def _reuse(root: _Node, first: dict[int, int], tokens: Sequence[int], kv: torch.Tensor) -> int:
    """Give the trie's nodes along ``tokens`` (a prefix kept from an earlier call, with its keys
    and values ``kv``) those keys and values, as far as the trie follows it and no sequence needs
    an output there; a node it covers in part is split. Returns the tokens newly covered."""
    node, d, covered = root, 0, 0
    while d < len(tokens):
        child = node.children.get(tokens[d])
        if child is None:
            break
        limit = min(len(child.tokens), len(tokens) - d, first[id(child)] - child.start)
        k = 0
        while k < limit and child.tokens[k] == tokens[d + k]:
            k += 1
        if k == 0:
            break
        if k < len(child.tokens):
            mid = _split(child, k)
            first[id(mid)] = first[id(child)]
            child = mid
        if child.kv is None:
            child.kv = kv[:, :, :, child.start : child.start + k]
            covered += k
        node, d = child, d + k
    return covered


def _shared_path(root: _Node) -> list[_Node]:
    """The nodes of the prefix every sequence of the call shares (the root's single-child path)."""
    path, node = [], root
    while len(node.children) == 1:
        (node,) = node.children.values()
        path.append(node)
    return path


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


_TREE = "promptlens_tree"
# One more attention call costs about as much as this many padded query-key pairs
# (measured on CPU: ~60 us per call against ~30 ns per pair and layer).
_CALL = 2048


def tree_supported(config: object) -> bool:
    """Whether the model's attention is plain causal softmax attention over every earlier
    position, which the tree attention below reproduces: no sliding window, no logit capping."""
    if getattr(config, "model_type", None) not in ("llama", "mistral", "qwen2", "qwen3"):
        return False
    if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        return False
    if getattr(config, "attn_logit_softcapping", None):
        return False
    return getattr(config, "_attn_implementation", "sdpa") in ("sdpa", "eager", None)


@dataclass
class _Group:
    """Chains whose attention runs as one batched call, each padded to the group's largest."""

    size: int
    n: int  # query rows per chain (padded)
    keys: int  # keys per chain (padded)
    query_index: torch.Tensor  # [size * n] rows of the bin
    key_index: torch.Tensor  # [size * keys] positions of the past + bin
    mask: torch.Tensor  # [size, 1, n, keys]
    real: torch.Tensor | None  # which of the size * n rows are real (None: all)
    dest: torch.Tensor  # the bin rows they go to
    # A lone chain that sees fewer past keys than it has tokens: its mask is causal aligned to the
    # bottom right, so it runs as plain causal attention with this many blank query rows in front
    # (SDPA's causal kernel skips the masked half, which the masked kernel computes: 11.3 ms against
    # 18.0 for 1,000 tokens on 1 thread; exact mode on the long workload 1.035x faster, same values).
    # None: the masked kernel.
    lead: int | None = None


def _greedy_groups(items: list[tuple[int, int, list[int]]]) -> list[list[tuple[int, int, list[int]]]]:
    """Cut sorted (row, tokens, keys) items into runs, extending a run while the padding it
    adds costs less than a call of its own."""
    def padded(part: list) -> int:
        return len(part) * max(i[1] for i in part) * max(len(i[2]) for i in part)

    parts: list[list] = []
    for item in items:
        if parts and padded([*parts[-1], item]) <= padded(parts[-1]) + item[1] * len(item[2]) + _CALL:
            parts[-1].append(item)
        else:
            parts.append([item])
    return parts


@dataclass
class _TreePlan:
    """Attention split by chain: each chain attends to its own ancestry's keys and its own
    tokens causally, instead of the whole bin under a mostly-false mask. Chains of similar
    size share one batched call, padded to the largest, where that costs less than a call."""

    groups: list[_Group]

    @classmethod
    def build(cls, batch: list[_Chain], seen: list[list[tuple[int, int]]], rows: dict[int, int],
              past_len: int, device: torch.device) -> _TreePlan:
        items = []
        for chain, spans in zip(batch, seen):
            q0, n = rows[id(chain)], len(chain.tokens)
            keys = [k for a, b in spans for k in range(a, b)] + list(range(past_len + q0, past_len + q0 + n))
            items.append((q0, n, keys))
        plans = [_greedy_groups(sorted(items, key=order))
                 for order in (lambda i: (-len(i[2]), -i[1]), lambda i: (-i[1], -len(i[2])))]
        # The cheaper grouping (the first on a tie).
        parts = min(plans, key=lambda plan: sum(_CALL + len(p) * max(i[1] for i in p) * len(p[0][2]) for p in plan))
        groups = [cls._group(part, device) for part in parts]
        return cls(groups)

    @staticmethod
    def _group(items: list[tuple[int, int, list[int]]], device: torch.device) -> _Group:
        size, n_max, k_max = len(items), max(i[1] for i in items), max(len(i[2]) for i in items)
        query_index: list[int] = []
        key_index: list[int] = []
        real: list[int] = []
        dest: list[int] = []
        mask = torch.zeros(size, 1, n_max, k_max, dtype=torch.bool)
        for g, (q0, n, keys) in enumerate(items):
            query_index += list(range(q0, q0 + n)) + [q0] * (n_max - n)
            key_index += keys + [keys[0]] * (k_max - len(keys))
            past = len(keys) - n
            mask[g, 0, :n, :past] = True
            mask[g, 0, :n, past : past + n] = torch.ones(n, n, dtype=torch.bool).tril()
            mask[g, 0, n:, 0] = True  # padding rows see one key (their output is dropped): no NaN
            real += range(g * n_max, g * n_max + n)
            dest += range(q0, q0 + n)
        all_real = len(real) == size * n_max
        past = k_max - n_max
        lead = past if size == 1 and past < n_max else None  # blank rows cost past^2/2 pairs; the mask's zeros n^2/2
        return _Group(size, n_max, k_max, torch.tensor(query_index, device=device),
                      torch.tensor(key_index, device=device), mask.to(device),
                      None if all_real else torch.tensor(real, device=device), torch.tensor(dest, device=device), lead)


def _tree_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, *, scaling: float | None = None, dropout: float = 0.0,
                    promptlens_tree: _TreePlan | None = None, **kwargs: object) -> tuple[torch.Tensor, None]:
    """A transformers attention function: query [1, heads, new, dim], key/value [1, kv_heads,
    past + new, dim] (rotary already applied) -> [1, new, heads, dim]."""
    if promptlens_tree is None:
        raise RuntimeError("tree attention needs the bin's plan")
    # Position-major copies once per layer, so each group gathers whole rows.
    q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))
    n_new, heads, dim = q.shape
    kv_heads = k.shape[1]
    out = q.new_empty(n_new, heads, dim)
    for g in promptlens_tree.groups:
        qg = q.index_select(0, g.query_index).view(g.size, g.n, heads, dim).transpose(1, 2)
        kg = k.index_select(0, g.key_index).view(g.size, g.keys, kv_heads, dim).transpose(1, 2)
        vg = v.index_select(0, g.key_index).view(g.size, g.keys, kv_heads, dim).transpose(1, 2)
        if g.lead is None:
            o = torch.nn.functional.scaled_dot_product_attention(qg, kg, vg, attn_mask=g.mask, scale=scaling,
                                                                 enable_gqa=heads != kv_heads)
        else:  # row i sees the past and its own first i + 1 tokens: causal, once blank rows fill the past
            qg = torch.cat([qg.new_zeros(1, heads, g.lead, dim), qg], dim=2)
            o = torch.nn.functional.scaled_dot_product_attention(qg, kg, vg, is_causal=True, scale=scaling,
                                                                 enable_gqa=heads != kv_heads)[:, :, g.lead :]
        o = o.transpose(1, 2).reshape(g.size * g.n, heads, dim)
        out.index_copy_(0, g.dest, o if g.real is None else o.index_select(0, g.real))
    return out[None], None


AttentionInterface.register(_TREE, _tree_attention)


@contextmanager
def _attention(config: PretrainedConfig, tree: bool) -> Iterator[None]:
    """Switch the model to the tree attention for one forward (and back, whatever happens)."""
    if not tree:
        yield
        return
    saved = config._attn_implementation
    config._attn_implementation = _TREE
    try:
        yield
    finally:
        config._attn_implementation = saved


class TrieScorer:
    """Teacher-forced log-probs of target tokens for many token sequences, sharing prefixes."""

    def __init__(self, model: PreTrainedModel, *, max_batch_tokens: int = 2048,
                 tree_attention: bool | None = None) -> None:
        self.model = model
        self.body = model.base_model
        self.head = model.get_output_embeddings()
        self.max_batch_tokens = max_batch_tokens
        # None: on wherever the model's attention is plain causal softmax attention (see below).
        self.tree_attention = tree_supported(model.config) if tree_attention is None else tree_attention
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        self.forward_passes = 0
        self.tokens_computed = 0  # positions run through the model body (there is no padding)
        self.tokens_reused = 0  # positions whose keys and values came from an earlier call (``keep_prefixes``)
        self.kept: list[tuple[list[int], torch.Tensor]] = []  # shared prefixes of earlier calls, oldest first
        self.keep_bytes = 0  # what ``kept`` may hold; 0: nothing is kept between calls

    @contextmanager
    def keep_prefixes(self, max_bytes: int = 256 * 2**20) -> Iterator[None]:
        """Within the block, each call keeps the keys and values of the prefix all its sequences
        share (up to ``max_bytes`` over all calls, the least recently used dropped first), and
        later calls run on top of them instead of computing them again: a trial's minibatch and
        the rest of its cases, or two trials that differ only after their first segments. Outside
        the block nothing is kept, so a call's result does not depend on calls before the block."""
        saved = self.keep_bytes, self.kept
        self.keep_bytes, self.kept = max_bytes, []
        try:
            yield
        finally:
            self.keep_bytes, self.kept = saved

    @torch.inference_mode()
    def score(self, seqs: Sequence[Sequence[int]], n_targets: Sequence[int]) -> list[list[float]]:
        """``out[s][k]`` = log p(seqs[s][-n+k] | seqs[s][:-n+k]) with ``n = n_targets[s]``."""
        for seq, n in zip(seqs, n_targets):
            if not 0 < n < len(seq):
                raise ValueError("each sequence needs at least one prompt token and one target token")
        root = _Node([], 0, None)
        for seq in seqs:
            _insert(root, seq)
        if self.kept:
            first = _first_needed(root, seqs, n_targets)
            for i in reversed(range(len(self.kept))):  # the most recent first
                if _reuse(root, first, *self.kept[i]):
                    self.kept.append(self.kept.pop(i))
        shared = _shared_path(root) if self.keep_bytes else []
        chains = _chains(root)  # parents before children
        _attach_requests(root, seqs, n_targets)
        out = [[0.0] * n for n in n_targets]
        self._execute(chains, out, shared)
        return out

    @torch.inference_mode()
    def score_hidden(self, prefix: Sequence[int], tails: Sequence[Sequence[int]], n_targets: Sequence[int],
                     hidden: Sequence[Sequence[tuple[int, int]]]) -> list[list[float]]:
        """Attention knockout: like ``score`` for the sequences ``prefix + tails[s]``, except that
        the tokens of ``tails[s]`` do not attend to the prefix positions in ``hidden[s]``
        ([start, end) ranges). The prefix runs once and every tail runs on its cached keys and
        values, so the prefix positions after a hidden range still carry what they saw of it
        (the approximation); tails with the same hidden ranges share their common prefixes.
        With no range hidden this equals ``score`` on the whole sequences."""
        for tail, n in zip(tails, n_targets):
            if not 0 < n < len(tail):
                raise ValueError("each tail needs at least one prompt token and one target token")
        if not prefix:
            raise ValueError("attention knockout needs a prefix to run the tails on")
        top = _Chain(0, None, list(prefix))
        chains = [top]
        groups: dict[tuple[tuple[int, int], ...], list[int]] = {}
        for s, ranges in enumerate(hidden):
            key = tuple(sorted((max(0, a), min(len(prefix), b)) for a, b in ranges if b > a))
            groups.setdefault(key, []).append(s)
        out = [[0.0] * n for n in n_targets]
        for key, members in groups.items():
            root = _Node([], 0, None)
            for s in members:
                _insert(root, tails[s])
            sub = _chains(root)
            _attach_requests(root, [tails[s] for s in members], [n_targets[s] for s in members])
            for chain in sub:  # tails start after the prefix; requests name the sequence among ``members``
                chain.start += len(prefix)
                chain.parent = chain.parent or top
                chain.hidden = key
                chain.requests = [(off, tok, members[m], k) for off, tok, m, k in chain.requests]
            chains += sub
        self._execute(chains, out)
        return out

    def _execute(self, chains: list[_Chain], out: list[list[float]], shared: Sequence[_Node] = ()) -> None:
        """Run the chains (parents first) in bins, writing each request's log-prob into ``out``;
        keep the keys and values of ``shared`` (the call's shared prefix) for later calls."""
        for chain in chains:
            if chain.done and chain.requests:
                raise RuntimeError("kept keys and values stood in for a position whose output is needed")
            chain.ancestry = _ancestry(chain)
            for anc, _ in chain.ancestry:
                anc.users += 1
        for node in shared:
            if node.chain is not None:
                node.chain.keep = True
        batches = self._batches([c for c in chains if not c.done])
        self.tokens_reused += sum(len(c.tokens) for c in chains if c.done)
        progress.planned(len(batches))  # a bar, if a job opened one (promptlens.progress)
        for batch in batches:
            self._run_splitting(batch, out)
            progress.advance()
        if shared:
            self._remember(list(shared))

    def _remember(self, path: list[_Node]) -> None:
        """Keep the keys and values of the call's shared prefix (``path``) for later calls."""
        parts = []
        for node in path:
            if node.chain is None:
                raise RuntimeError("_chains gives every node below the root a chain; run it first")
            parts.append(node.chain.cached()[:, :, :, node.offset : node.offset + len(node.tokens)])
        tokens = [t for node in path for t in node.tokens]
        kv = torch.cat(parts, dim=3)
        for i, (old, _) in enumerate(self.kept):
            if old[: len(tokens)] == tokens:  # already kept (as this prefix or a longer one)
                self.kept.append(self.kept.pop(i))
                return
        self.kept = [(old, okv) for old, okv in self.kept if tokens[: len(old)] != old]  # prefixes of this one
        self.kept.append((tokens, kv))
        while self.kept and sum(k.numel() * k.element_size() for _, k in self.kept) > self.keep_bytes:
            self.kept.pop(0)

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
            half = len(batch) // 2  # both halves stay in parents-first order
            self._run_splitting(batch[:half], out)
            self._run_splitting(batch[half:], out)
            return
        for chain in batch:  # nothing above has changed any state if the bin failed
            for anc, _ in chain.ancestry:
                anc.users -= 1
                if anc.users == 0 and not anc.keep:
                    anc.kv = None  # every chain that needs it is done

    def _batches(self, chains: list[_Chain]) -> list[list[_Chain]]:
        """Cut the chains, parents first, into bins of at most ``max_batch_tokens`` tokens (a
        longer chain runs alone). A chain may share a bin with its ancestors: it sees their
        keys and values computed in the same pass, layer by layer, as one causal sequence does."""
        batches: list[list[_Chain]] = []
        current: list[_Chain] = []
        size = 0
        for chain in chains:
            if current and size + len(chain.tokens) > self.max_batch_tokens:
                batches.append(current)
                current, size = [], 0
            current.append(chain)
            size += len(chain.tokens)
        return batches + [current] if current else batches

    def _run(self, batch: list[_Chain], out: list[list[float]]) -> None:
        """One forward over the chains of ``batch`` packed into a single row, no padding.

        The past holds the cached keys/values of each ancestor outside the bin once (as far as
        any chain of the bin needs them); each chain's tokens see exactly their ancestry (in the
        past or earlier in the bin) and themselves causally, at their true positions.
        """
        device = self.head.weight.device
        rows, q = {}, 0
        for chain in batch:
            rows[id(chain)] = q
            q += len(chain.tokens)
        n_new = q
        needed: dict[int, tuple[_Chain, int]] = {}
        for chain in batch:
            for anc, upto in chain.ancestry:
                if id(anc) not in rows and upto > needed.get(id(anc), (anc, 0))[1]:
                    needed[id(anc)] = (anc, upto)
        offsets, past_len = {}, 0
        for key, (anc, upto) in needed.items():
            offsets[key] = past_len
            past_len += upto
        # The keys each chain sees, as [start, end) ranges of the past followed by this bin.
        seen = []
        for chain in batch:
            spans = [(offsets[id(anc)], offsets[id(anc)] + upto) if id(anc) in offsets
                     else (past_len + rows[id(anc)], past_len + rows[id(anc)] + upto)
                     for anc, upto in chain.ancestry]
            if chain.hidden:
                spans = _without(spans, [anc.start for anc, _ in chain.ancestry], chain.hidden)
            seen.append(spans)
        ids = torch.tensor([t for chain in batch for t in chain.tokens], dtype=torch.long)
        positions = torch.cat([chain.start + torch.arange(len(chain.tokens)) for chain in batch])

        cache = DynamicCache()
        if past_len:
            past = torch.cat([anc.cached()[:, :, :, :upto] for anc, upto in needed.values()], dim=3)
            cache = DynamicCache([(past[layer, 0][None], past[layer, 1][None]) for layer in range(past.shape[0])])
        kwargs: dict = {}
        if self.tree_attention:
            plan, mask = _TreePlan.build(batch, seen, rows, past_len, device), None
            kwargs["promptlens_tree"] = plan
        else:
            mask = self._dense_mask(batch, seen, rows, past_len, n_new).to(device)
        with _attention(self.model.config, self.tree_attention):
            hidden = self.body(
                input_ids=ids[None].to(device),
                attention_mask=mask,
                position_ids=positions[None].to(device),
                cache=cache,
                use_cache=True,
                **kwargs,
            ).last_hidden_state[0]
        self.forward_passes += 1
        self.tokens_computed += n_new

        in_bin: dict[int, int] = {}
        for chain in batch:
            for anc, _ in chain.ancestry:
                in_bin[id(anc)] = in_bin.get(id(anc), 0) + 1
        later = [c for c in batch if c.users > in_bin.get(id(c), 0) or c.keep]  # needed by a later bin, or kept
        if later:
            # Only this bin's new positions: the past part of the cache is already held by its owners.
            kv = torch.stack([_new_kv(layer, past_len) for layer in cache.layers])
            for chain in later:
                q0 = rows[id(chain)]
                chain.kv = kv[:, :, :, q0 : q0 + len(chain.tokens)].clone()

        requests = [(rows[id(c)] + off, tok, s, k) for c in batch for off, tok, s, k in c.requests]
        if not requests:
            return
        logits = self.head(hidden[torch.tensor([r[0] for r in requests], device=device)]).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        tokens = torch.tensor([r[1] for r in requests], device=device)
        logprobs = (logits.gather(1, tokens[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)).tolist()
        for (_, _, s, k), lp in zip(requests, logprobs):
            out[s][k] = lp

    def _dense_mask(self, batch: list[_Chain], seen: list[list[tuple[int, int]]], rows: dict[int, int],
                    past_len: int, n_new: int) -> torch.Tensor:
        """The whole bin's [1, 1, new, past + new] mask, for attention we cannot split by chain."""
        mask = torch.zeros(n_new, past_len + n_new, dtype=torch.bool)
        for chain, spans in zip(batch, seen):
            q0, n = rows[id(chain)], len(chain.tokens)
            for a, b in spans:
                mask[q0 : q0 + n, a:b] = True
            mask[q0 : q0 + n, past_len + q0 : past_len + q0 + n] = torch.ones(n, n, dtype=torch.bool).tril()
        mask = mask[None, None]
        if getattr(self.model.config, "_attn_implementation", "sdpa") == "eager":
            dtype = self.head.weight.dtype
            mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
        return mask


def _without(spans: list[tuple[int, int]], starts: list[int], hidden: Sequence[tuple[int, int]]
             ) -> list[tuple[int, int]]:
    """Key spans (each ancestor's, which starts at absolute position ``starts[j]``) less the
    absolute position ranges ``hidden``."""
    out = []
    for (a, b), start in zip(spans, starts):
        cuts = sorted((max(a, a + h0 - start), min(b, a + h1 - start)) for h0, h1 in hidden)
        cursor = a
        for c0, c1 in cuts:
            if c1 <= c0:
                continue
            if c0 > cursor:
                out.append((cursor, c0))
            cursor = max(cursor, c1)
        if cursor < b:
            out.append((cursor, b))
    return out


def _new_kv(layer: object, past_len: int) -> torch.Tensor:
    """[2, kv_heads, new, head_dim]: the keys and values a cache layer holds past ``past_len``."""
    if not isinstance(layer, CacheLayerMixin) or layer.keys is None or layer.values is None:
        raise PromptLensError(f"the model's cache layer {type(layer).__name__} holds no keys and values; "
                              "the prefix-sharing scorer needs a model with plain attention")
    return torch.stack([layer.keys[0, :, past_len:], layer.values[0, :, past_len:]])


@torch.inference_mode()
def naive_token_logprobs(model: PreTrainedModel, seq: Sequence[int], n_target: int) -> list[float]:
    """Reference: one plain forward over the whole sequence, log-softmax at every position."""
    ids = torch.tensor([list(seq)], device=model.get_output_embeddings().weight.device)
    logits = model(input_ids=ids).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    n = len(seq)
    return [logprobs[p, seq[p + 1]].item() for p in range(n - n_target - 1, n - 1)]
