"""The benchmarks' --profile table: ops land in the right stage; shares add up to the wall time."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from profile_stages import STAGES, profile_detail, profile_stages, stage_of  # noqa: E402


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


def test_profile_detail_names_the_costliest_ops_and_retimes_matmul_shapes_alone():
    a, b = torch.randn(64, 96), torch.randn(96, 128)
    bias = torch.randn(128)

    def work():
        for _ in range(3):
            a @ b
            torch.addmm(bias, a, b)
            torch.nn.functional.silu(a)

    detail = profile_detail(work, peak_gflops=100.0)
    assert [r["stage"] for r in detail["stages"][:-1]] == list(STAGES)
    assert any(name == "aten::silu" for name, _ in detail["top_ops"]["elementwise"])
    shapes = {(m["op"], tuple(map(tuple, m["shapes"]))) for m in detail["matmul_shapes"]}
    assert ("aten::mm", ((64, 96), (96, 128))) in shapes
    assert ("aten::addmm", ((128,), (64, 96), (96, 128))) in shapes
    assert all(m["calls"] == 3 and m["gflops_alone"] > 0 for m in detail["matmul_shapes"])
    assert detail["matmul_alone_gflops"] > 0

