"""Scorer throughput on randomly initialised Llama-style models (no download): tokens/s of the
prefix-sharing scorer and of a plain padded batch forward, per model size, device and dtype.

    python benchmarks/gpu_check.py --device cuda --sizes 135m 1b 7b --dtypes bfloat16 float32

The workload looks like attribution: ``--variants`` prompt variants of ``--prompt-tokens`` tokens
that share everything up to a different cut point, each followed by ``--targets`` targets of
``--target-tokens`` tokens. Random weights give meaningless log-probs at the same cost as real ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from promptlens.backends.hf import DTYPES, check_device  # noqa: E402
from promptlens.prefix import TrieScorer  # noqa: E402

# Llama-style shapes: SmolLM2-135M, Llama-3.2-1B, Llama-2-7B.
SIZES = {
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, vocab_size=49152),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256),
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000),
}


def build(size: str, device: str, dtype: str) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SIZES[size], max_position_embeddings=4096, tie_word_embeddings=size == "135m")
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(DTYPES[dtype])
    return model.eval()


def workload(vocab: int, variants: int, prompt_tokens: int, targets: int, target_tokens: int) -> tuple[list, list]:
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, vocab, (prompt_tokens,), generator=g).tolist()
    seqs = []
    for v in range(variants):
        cut = prompt_tokens * (v + 1) // (variants + 1)  # variant v differs from the base after `cut`
        prompt = base[:cut] + torch.randint(0, vocab, (prompt_tokens - cut,), generator=g).tolist()
        for _ in range(targets):
            seqs.append(prompt + torch.randint(0, vocab, (target_tokens,), generator=g).tolist())
    return seqs, [target_tokens] * len(seqs)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def measure(model: torch.nn.Module, device: str, args: argparse.Namespace) -> dict:
    seqs, n_targets = workload(model.config.vocab_size, args.variants, args.prompt_tokens, args.targets,
                               args.target_tokens)
    scorer = TrieScorer(model, max_batch_tokens=args.max_batch_tokens)
    scorer.score(seqs[:2], n_targets[:2])  # warm-up
    sync(device)
    start, t0 = time.perf_counter(), scorer.tokens_computed
    scorer.score(seqs, n_targets)
    sync(device)
    trie_s = time.perf_counter() - start
    # Plain padded forward of every sequence (no sharing), in batches of args.batch.
    start = time.perf_counter()
    for i in range(0, len(seqs), args.batch):
        ids = torch.tensor(seqs[i : i + args.batch], device=device)
        model(input_ids=ids).logits[:, -args.target_tokens - 1 : -1].float().log_softmax(-1)
    sync(device)
    plain_s = time.perf_counter() - start
    total = sum(len(s) for s in seqs)
    return {"sequences": len(seqs), "tokens": total, "trie_tokens_run": scorer.tokens_computed - t0,
            "trie_s": round(trie_s, 3), "trie_seq_tokens_per_s": round(total / trie_s),
            "plain_s": round(plain_s, 3), "plain_tokens_per_s": round(total / plain_s)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"], choices=list(DTYPES))
    ap.add_argument("--variants", type=int, default=32)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--targets", type=int, default=2)
    ap.add_argument("--target-tokens", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16, help="sequences per plain forward")
    ap.add_argument("--max-batch-tokens", type=int, default=4096, help="scorer bin size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    print(f"device {args.device} ({name}), torch {torch.__version__}")
    for size in args.sizes:
        for dtype in args.dtypes:
            check_device(args.device, dtype)
            start = time.perf_counter()
            model = build(size, args.device, dtype)
            params = sum(p.numel() for p in model.parameters())
            row = {"size": size, "params_m": round(params / 1e6), "dtype": dtype, "device": args.device,
                   "init_s": round(time.perf_counter() - start, 1), **measure(model, args.device, args)}
            if args.device.startswith("cuda"):
                row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
                torch.cuda.reset_peak_memory_stats()
            print(json.dumps(row), flush=True)
            rows.append(row)
            del model
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
