"""The benchmarks' --profile table: ops land in the right stage; shares add up to the wall time."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from profile_stages import STAGES, profile_stages, stage_of  # noqa: E402


def test_stage_of_known_ops():
    assert stage_of("aten::addmm") == "matmul"
    assert stage_of("aten::mm") == "matmul"
    assert stage_of("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert stage_of("aten::layer_norm") == "norm"
    assert stage_of("aten::embedding") == "gather"
    assert stage_of("aten::index") == "gather"
    assert stage_of("aten::silu") == "elementwise"


def test_profile_stages_counts_matmul_flops_and_sums_to_wall():
    a, b, big = torch.randn(256, 256), torch.randn(256, 256), torch.randn(2000, 2000)

    def work():
        for _ in range(5):
            a @ b
            torch.nn.functional.silu(big)

    rows = profile_stages(work, peak_gflops=100.0)
    by = {r["stage"]: r for r in rows}
    assert [r["stage"] for r in rows[:-1]] == list(STAGES)
    assert by["matmul"]["s"] > 0 and by["matmul"]["gflops"] > 0 and by["matmul"]["peak_gflops"] == 100.0
    assert by["elementwise"]["s"] > 0
    total = by["total (wall, profiled)"]["s"]
    # python/other is the wall time no op accounts for, so the stages cover at least the wall time
    assert by["python/other"]["s"] >= 0 and sum(by[s]["s"] for s in STAGES) >= total - 0.005
