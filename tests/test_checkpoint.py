"""Checkpoints: the previous one is kept, damaged files give errors that name the file and
the good checkpoint beside it, and commands refuse the wrong kind of model."""

from __future__ import annotations

import pytest
import torch

from gankernels import checkpoint
from gankernels.cli import main
from gankernels.train import TrainConfig, train

pytest.importorskip("sklearn", reason="the training run reads sklearn's digits")


def _ckpt(step: int, model: str = "dcgan") -> dict:
    return {"config": {"model": model}, "step": step, "G": {"w": torch.randn(3)}}


def test_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save(path, _ckpt(1))
    checkpoint.save(path, _ckpt(2))
    assert checkpoint.load(path)["step"] == 2
    assert checkpoint.load(tmp_path / "previous.pt")["step"] == 1


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_checkpoint_names_the_file_and_the_previous_one(tmp_path, damage):
    path = tmp_path / "last.pt"
    checkpoint.save(path, _ckpt(1))
    checkpoint.save(path, _ckpt(2))
    data = path.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"12\nab", "empty": b""}[damage]
    )
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load(path)
    message = str(err.value)
    assert f"checkpoint {path} is unreadable" in message
    assert "previous.pt (step 1) is readable" in message
    assert "invalid literal" not in message


def test_not_a_checkpoint_and_wrong_kind(tmp_path):
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not a gankernels training checkpoint"):
        checkpoint.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.pt")
    checkpoint.save(tmp_path / "p2p.pt", _ckpt(1, model="pix2pix"))
    with pytest.raises(checkpoint.CheckpointError, match="holds a pix2pix model.*translate"):
        checkpoint.load(tmp_path / "p2p.pt", kind="generation")
    checkpoint.save(tmp_path / "gan.pt", _ckpt(1, model="sngan"))
    with pytest.raises(checkpoint.CheckpointError, match="holds a sngan model.*generate"):
        checkpoint.load(tmp_path / "gan.pt", kind="translation")


def test_resume_from_a_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--image-size", "28", "--batch", "8", "--width", "8"]
    args += ["--z-dim", "8", "--ckpt-every", "1", "--out", str(out), "--no-progress"]
    assert main([*args, "--steps", "2"]) == 0
    (out / "last.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main([*args, "--steps", "3", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert "last.pt is unreadable" in err[0] and "previous.pt (step 1)" in err[0]


def test_progress_off_a_terminal_prints_plain_lines(tmp_path, capsys):
    config = TrainConfig(
        data="digits", image_size=28, batch=8, width=8, z_dim=8, steps=4, log_every=2,
        out=str(tmp_path / "run"), sample_every=100, ckpt_every=100, progress=True,
    )  # fmt: skip
    train(config)
    captured = capsys.readouterr()
    lines = [ln for ln in captured.out.splitlines() if ln.startswith("step ")]
    assert [ln.split()[1] for ln in lines] == ["2/4", "4/4"]
    assert "loss_d" in lines[0] and "img/s" in lines[0]
    assert "\r" not in captured.err + captured.out
