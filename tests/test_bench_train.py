"""`gankernels bench --train`: repeated runs with the worst gk / torch ratio and CPU-time
rates, and `--profile`'s tables, on a tiny DCGAN + WGAN-GP (digits, --quick)."""

import csv
import json

import pytest

from gankernels.bench import train as bench_train
from gankernels.cli import main

pytest.importorskip("sklearn", reason="the quick runs use sklearn's digits")


def test_repeat_reports_medians_worst_ratio_and_cpu_time(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results"
    args = ["bench", "--train", "--quick", "--no-compile", "--cases", "dcgan_wgan_gp"]
    args += ["--repeat", "2", "--intervals", "1", "--interval", "2", "--out", str(out)]
    assert main(args) == 0
    (results,) = out.glob("train_cpu_quick_*.json")
    doc = json.loads(results.read_text())
    rows = doc["rows"]
    assert sorted((r["provider"], r["run"]) for r in rows) == [
        ("gk", 0), ("gk", 1), ("torch", 0), ("torch", 1)
    ]  # fmt: skip
    assert all(r["status"] == "ok" and r["cpu_images_per_s"] > 0 for r in rows)
    assert all(r["load_before"] is not None for r in rows) and doc["meta"]["repeat"] == 2
    table = capsys.readouterr().out
    assert "| worst gk / torch | gk / torch, CPU time |" in table
    line = next(ln for ln in table.splitlines() if ln.startswith("| dcgan_wgan_gp"))
    assert line.count("x |") == 3, line  # gk / torch, worst, CPU time


def test_interleave_takes_turns(tmp_path, monkeypatch):
    """--interleave: each provider's timed intervals run while the other waits."""
    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results"
    args = ["bench", "--train", "--quick", "--no-compile", "--cases", "dcgan_wgan_gp"]
    args += ["--interleave", "--out", str(out)]  # --quick: 2 intervals of 2 steps
    assert main(args) == 0
    (results,) = out.glob("train_cpu_quick_*.json")
    doc = json.loads(results.read_text())
    rows = {r["provider"]: r for r in doc["rows"]}
    assert set(rows) == {"torch", "gk"} and doc["meta"]["interleave"] is True
    for r in rows.values():
        assert r["status"] == "ok" and r["timing"] == "interleaved", r
        assert r["intervals"] == 2 and r["steps_per_interval"] == 2 and r["images_per_s"] > 0
        assert r["memory_format"] in ("contiguous", "channels_last")
    # torch's interval i, then gk's, then torch's i + 1: no overlap, in that order
    order = sorted((start, end, p) for p, r in rows.items() for start, end in r["spans"])
    assert [p for *_, p in order] == ["torch", "gk"] * 2
    assert all(a[1] <= b[0] for a, b in zip(order, order[1:], strict=False))


def test_profile_writes_tables_and_a_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results"
    args = ["bench", "--train", "--quick", "--cases", "dcgan_wgan_gp", "--profile"]
    assert main(args + ["--profile-steps", "1", "--out", str(out)]) == 0
    (folder,) = out.glob("profile_cpu_*")
    for provider in ("torch", "gk"):
        text = (folder / f"dcgan_wgan_gp_{provider}.txt").read_text()
        assert "aten::convolution_backward" in text and "OMP_NUM_THREADS" in text
    with open(folder / "profile.csv") as f:
        rows = list(csv.DictReader(f))
    names = {r["name"] for r in rows if r["provider"] == "gk"}
    assert "gankernels.d_step" in names and any(n.startswith("gankernels::") for n in names)
    summary = (folder / "summary.md").read_text()
    assert "| dcgan_wgan_gp | gk |" in summary and "| gankernels |" in summary


def test_categories():
    assert bench_train._category("gankernels::bias_act_grad") == "gankernels"
    assert bench_train._category("autograd::engine::evaluate_function: _BiasActBackward") == (
        "gankernels"
    )
    assert bench_train._category("aten::mkldnn_convolution") == "conv and matmul"
    assert bench_train._category("aten::native_batch_norm") == "torch norm and activation"
    assert bench_train._category("aten::copy_") == "other"
