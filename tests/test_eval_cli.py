"""`gankernels eval` on a trained checkpoint, on a folder of images and on the data set
itself; clear errors for bad input."""

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from gankernels import cli
from gankernels.train import TrainConfig, train

pytest.importorskip("sklearn", reason="the tests use sklearn's digits")
if importlib.util.find_spec("digit_recognizer") is None:  # never imported: it needs torchvision
    pytest.skip("needs `pip install --no-deps digit-recognizer-py`", allow_module_level=True)


@pytest.fixture(autouse=True)
def _feature_cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path / "cache"))


def test_eval_of_a_checkpoint_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "run"
    train(
        TrainConfig(
            data="digits",
            image_size=28,
            width=8,
            z_dim=16,
            batch=8,
            steps=2,
            progress=False,
            out=str(out),
        )
    )
    args = ["eval", "--ckpt", str(out / "last.pt"), "--data", "digits", "--split", "train"]
    args += ["--n", "300", "--no-progress"]
    code = cli.main(args)
    text = capsys.readouterr().out
    assert code == 0, text
    for label in ("FID", "KID", "Inception Score", "precision / recall", "mode coverage"):
        assert label in text
    saved = json.loads((out / "eval.json").read_text())
    # The real features were cached, and a second evaluation reads them back.
    assert list((tmp_path / "cache" / "features").glob("digits-train-n300-*-digits.v*.pt"))
    assert cli.main([*args, "--json", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["fid"] == pytest.approx(json.loads((out / "eval.json").read_text())["fid"])
    assert saved["num_fake"] == saved["num_real"] == 300
    assert np.isfinite(saved["fid"]) and saved["modes"]["num_classes"] == 10


def test_eval_of_a_folder_against_the_data_set(tmp_path, capsys):
    from gankernels.data import load_dataset

    images = load_dataset("digits", image_size=28).images[:300, 0].numpy()
    folder = tmp_path / "fake"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    code = cli.main(
        [
            "eval",
            "--fake",
            f"folder:{folder}",
            "--data",
            "digits",
            "--split",
            "train",
            "--n",
            "300",
            "--metrics",
            "fid,modes",
            "--image-size",
            "28",
            "--no-progress",
            "--json",
            str(tmp_path / "e.json"),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    scores = json.loads((tmp_path / "e.json").read_text())
    # The same 300 images on both sides (read back from PNG): FID ~ 0, no mode problems.
    assert abs(scores["fid"]) < 1e-3
    assert "no mode collapse" in scores["modes_verdict"]


def test_eval_errors_are_clear(tmp_path, capsys):
    assert cli.main(["eval", "--ckpt", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    code = cli.main(
        [
            "eval",
            "--data",
            "digits",
            "--split",
            "train",
            "--n",
            "100",
            "--metrics",
            "fid",
            "--no-progress",
        ]
    )
    assert code == 2
    assert "too few" in capsys.readouterr().err
