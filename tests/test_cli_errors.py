"""Expected user errors of every command: one line on stderr naming the problem, exit
status 2, no traceback."""

from __future__ import annotations

import pytest

from gankernels import data
from gankernels.cli import main

pytest.importorskip("sklearn", reason="the runs read sklearn's digits")


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_missing_debian_data_set(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path / "absent")
    line = one_line_error(capsys, ["train", "--data", "fashion-mnist", "--out", str(tmp_path)])
    assert line.startswith("gankernels train: error: data set 'fashion-mnist' is not installed")
    assert "apt-get install -y dataset-fashion-mnist" in line


def test_missing_folder_is_named_before_image_size(capsys, tmp_path):
    line = one_line_error(
        capsys, ["train", "--data", "folder:/no/such/dir", "--out", str(tmp_path)]
    )
    assert "image folder /no/such/dir does not exist" in line


def test_eval_and_translate_name_missing_checkpoints(capsys, tmp_path):
    line = one_line_error(capsys, ["eval", "--ckpt", str(tmp_path / "none.pt")])
    assert "none.pt does not exist" in line
    args = ["translate", "--ckpt", str(tmp_path / "none.pt"), "--input", "x", "--out", "y"]
    assert "none.pt does not exist" in one_line_error(capsys, args)


def test_bad_values_are_one_line(capsys, tmp_path):
    line = one_line_error(capsys, ["train", "--steps", "0", "--out", str(tmp_path)])
    assert "steps must be an integer >= 1" in line
    line = one_line_error(capsys, ["train", "--model", "pix2pix", "--data", "digits",
                                   "--out", str(tmp_path)])  # fmt: skip
    assert "needs a two-sided data set" in line


def test_digits_are_resized_to_the_models_smallest_size(capsys, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--model", "dcgan", "--data", "digits", "--steps", "1", "--batch", "8"]
    args += ["--width", "8", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "8 px images are resized to 28 px" in printed
    assert main([*args, "--image-size", "32", "--overwrite"]) == 0
