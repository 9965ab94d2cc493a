"""The training loop: exact resume, DDP equivalence, divergence handling, settings and CLI."""

import dataclasses
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gankernels.tasks as tasks_mod
import gankernels.train as train_mod
from gankernels import cli, train_cli
from gankernels.losses import get_loss
from gankernels.tasks import make_task
from gankernels.train import Dist, TrainConfig, TrainingDiverged, train

pytest.importorskip("sklearn", reason="the tests train on sklearn's digits")

TINY = dict(data="digits", image_size=28, batch=8, width=8, z_dim=16, log_every=2, progress=False)


def tiny(tmp_path: Path, **overrides) -> TrainConfig:
    values = {**TINY, "out": str(tmp_path / "run"), "sample_every": 1000, "ckpt_every": 1000}
    values.update(overrides)
    return TrainConfig(**values)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_state(a, b, atol=0.0, rtol=0.0, where="") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], atol, rtol, f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, atol, rtol, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"{where}: {m}")
    else:
        assert a == b, where


@pytest.mark.parametrize(
    "model,loss",
    [("dcgan", "wgan-gp"), ("sngan", "hinge"), ("stylegan2", "r1"), ("dcgan", "wgan")],
)
def test_resume_continues_exactly(tmp_path, model, loss):
    """N steps straight == N/2 steps, stop, resume, N/2 more: weights, EMA, optimisers."""
    steps = 4
    extra = {"reg_every": 2} if loss == "r1" else {}
    straight = tiny(tmp_path / "a", model=model, loss=loss, steps=steps, ckpt_every=2, **extra)
    train(straight)
    half = tiny(tmp_path / "b", model=model, loss=loss, steps=steps // 2, ckpt_every=2, **extra)
    train(half)
    train(dataclasses.replace(half, steps=steps, resume=True))
    a, b = load(Path(straight.out) / "last.pt"), load(Path(half.out) / "last.pt")
    assert a["step"] == b["step"] == steps
    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "data"):
        assert_same_state(a[key], b[key], where=key)
    # The resumed log reads as one run.
    rows = (Path(half.out) / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4"]


def test_conditional_run_writes_outputs(tmp_path):
    config = tiny(tmp_path, model="dcgan", loss="hinge", conditional=True, steps=4, sample_every=2)
    result = train(config)
    out = Path(config.out)
    for name in ("last.pt", "log.csv", "samples.png", "samples_000002.png", "losses.png"):
        assert (out / name).is_file(), name
    assert result.images_per_second > 0
    ckpt = load(out / "last.pt")
    assert ckpt["build"]["num_classes"] == 10
    from PIL import Image

    grid = Image.open(out / "samples.png")
    assert grid.size[0] > 8 * 28 and grid.size[1] > 10 * 28  # 8 per class, 10 classes


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real_get_loss = train_mod.get_loss
    calls = {"n": 0}

    def poisoned(name, **overrides):
        loss = real_get_loss(name, **overrides)

        def g_loss(fake):
            calls["n"] += 1
            value = loss.g_loss(fake)
            return value * float("nan") if calls["n"] > 4 else value

        return dataclasses.replace(loss, g_loss=g_loss)

    monkeypatch.setattr(train_mod, "get_loss", poisoned)
    config = tiny(tmp_path, model="dcgan", loss="hinge", steps=10, ckpt_every=2)
    with pytest.raises(TrainingDiverged, match=r"last.pt \(step 4\)"):
        train(config)
    assert load(Path(config.out) / "last.pt")["step"] == 4


def test_refuses_incompatible_choices(tmp_path):
    with pytest.raises(ValueError, match="spectral norm"):
        train(tiny(tmp_path, model="sngan", loss="wgan", steps=1))
    with pytest.raises(ValueError, match="model must be one of"):
        train(tiny(tmp_path, model="nope", steps=1))
    with pytest.raises(ValueError, match="wgan-gp"):
        train(tiny(tmp_path, loss="nope", steps=1))
    with pytest.raises(ValueError, match="steps"):
        train(tiny(tmp_path, steps=0))
    with pytest.raises(ValueError, match="ema"):
        train(tiny(tmp_path, ema=1.0))
    with pytest.raises(ValueError, match="mode_seeking must be a number >= 0"):
        train(tiny(tmp_path, mode_seeking=-1.0))
    with pytest.raises(ValueError, match="channels_last must be True, False or None, got 'yes'"):
        train(tiny(tmp_path, channels_last="yes"))
    with pytest.raises(ValueError, match="amp must be True or False, got 1"):
        train(tiny(tmp_path, amp=1))
    with pytest.raises(ValueError, match=r"batch per rank \(7\) must be even"):
        train(tiny(tmp_path, mode_seeking=1.0, batch=7))


def test_mode_seeking_pairs_labels_and_adds_its_term(tmp_path, monkeypatch):
    """G's step with --mode-seeking: labels come in equal pairs and G's loss is the
    adversarial loss plus the weighted mode-seeking term of that very batch."""
    seen = []
    real_loss = tasks_mod.mode_seeking_loss

    def spy(fake, z):
        value = real_loss(fake, z)
        seen.append(value.item())
        return value

    monkeypatch.setattr(tasks_mod, "mode_seeking_loss", spy)
    labels = []
    real_build = tasks_mod.build_networks

    def build(info):
        G, D = real_build(info)
        forward = G.forward

        def recording(z, y=None, **kw):
            if torch.is_grad_enabled():  # G's own step, not the D step's sampling
                labels.append(y.clone())
            return forward(z, y, **kw)

        G.forward = recording
        return G, D

    monkeypatch.setattr(tasks_mod, "build_networks", build)
    config = tiny(tmp_path, loss="hinge", n_critic=1, conditional=True, steps=3, mode_seeking=2.0)
    result = train(config)
    assert len(seen) == 3 and all(v > 0 for v in seen)
    assert labels and all(torch.equal(y[0::2], y[1::2]) for y in labels)
    assert all(math.isfinite(float(row["loss_g"])) for row in result.history)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DDP_WORKER = """
import sys, torch
from gankernels.train import TrainConfig, train
torch.set_num_threads(1)
train(TrainConfig(**eval(sys.argv[1])))
"""


def test_two_gloo_processes_match_one(tmp_path):
    """2 ranks with batch 8 each == 1 process with batch 16: same global batches, noise
    and penalty draws; gradients averaged across ranks."""
    values = {**TINY, "model": "dcgan", "loss": "wgan-gp", "steps": 3, "batch": 16}
    # No batch norm in G: per-rank batch statistics differ from the global batch's.
    values.update(ckpt_every=3, sample_every=1000, n_critic=2, model_options={"g_norm": None})
    one = dict(values, out=str(tmp_path / "one"))
    two = dict(values, out=str(tmp_path / "two"))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    subprocess.run([sys.executable, "-c", DDP_WORKER, repr(one)], env=env, check=True)
    port = _free_port()
    procs = []
    for rank in range(2):
        rank_env = dict(
            env,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            WORLD_SIZE="2",
            RANK=str(rank),
            LOCAL_RANK=str(rank),
        )
        procs.append(subprocess.Popen([sys.executable, "-c", DDP_WORKER, repr(two)], env=rank_env))
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    a, b = load(tmp_path / "one" / "last.pt"), load(tmp_path / "two" / "last.pt")
    assert len(b["rng"]) == 2  # every rank's random state
    for key in ("G", "D", "G_ema"):
        assert_same_state(a[key], b[key], atol=1e-5, rtol=1e-4, where=key)


def test_cli_help_documents_every_setting(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        flag = "--model-option" if f.name == "model_options" else "--" + f.name.replace("_", "-")
        assert flag in text


def test_cli_config_file_and_flags(tmp_path):
    (tmp_path / "run.yaml").write_text("model: sngan\nloss: hinge\nsteps: 7\nbatch: 4\n")
    (tmp_path / "run.toml").write_text('model = "dcgan"\nlr-g = 0.001\n')
    parser = cli.argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(
        ["--config", str(tmp_path / "run.yaml"), "--steps", "9", "--amp"]
        + ["--model-option", "g_norm=none", "--model-option", "d_width=32"]
    )
    config = train_cli.config_from_args(args)
    assert config.model_options == {"g_norm": None, "d_width": 32}
    assert (config.model, config.loss, config.steps, config.batch, config.amp) == (
        "sngan",
        "hinge",
        9,
        4,
        True,
    )
    config = train_cli.config_from_args(parser.parse_args(["--config", str(tmp_path / "run.toml")]))
    assert (config.model, config.lr_g) == ("dcgan", 0.001)
    (tmp_path / "bad.yaml").write_text("modle: dcgan\n")
    with pytest.raises(ValueError, match="modle"):
        train_cli.config_from_args(parser.parse_args(["--config", str(tmp_path / "bad.yaml")]))


def test_cli_trains_and_reports(tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli.main(
        [
            "train",
            "--data",
            "digits",
            "--image-size",
            "28",
            "--width",
            "8",
            "--steps",
            "2",
            "--batch",
            "8",
            "--log-every",
            "1",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "images/s" in capsys.readouterr().out
    assert cli.main(["train", "--model", "nope", "--out", str(out)]) == 2
    assert "dcgan" in capsys.readouterr().err


def test_bn_critic_refused_with_gradient_penalty(tmp_path):
    config = tiny(tmp_path, loss="wgan-gp", steps=1, model_options={"d_norm": "batch"})
    with pytest.raises(ValueError, match="batch norm"):
        train(config)
    # The same critic without a penalty trains (the DCGAN paper's D).
    train(dataclasses.replace(config, loss="nonsaturating"))


def test_amp_channels_last_and_reference_run(tmp_path):
    for name, extra in (
        ("amp", dict(amp=True, channels_last=True)),
        ("reference", dict(reference=True)),
    ):
        config = tiny(tmp_path / name, model="stylegan2", loss="r1", steps=2, **extra)
        result = train(config)
        assert result.steps == 2
        row = result.history[-1]
        assert all(torch.isfinite(torch.tensor(row[k])) for k in ("loss_d", "loss_g"))


def test_same_seed_same_weights_and_seed_matters(tmp_path):
    def weights(name, seed):
        config = tiny(tmp_path / name, loss="lsgan", steps=2, seed=seed, deterministic=True)
        train(config)
        return load(Path(config.out) / "last.pt")["G"]

    a, b, c = weights("a", 0), weights("b", 0), weights("c", 1)
    assert_same_state(a, b)
    assert not torch.equal(a["net.0.weight"], c["net.0.weight"])


@pytest.mark.slow
def test_compiled_run_matches_eager(tmp_path):
    """torch.compile of G and D (the penalty's D forward stays eager) trains the same."""
    eager = tiny(tmp_path / "eager", model="dcgan", loss="r1", steps=2, reg_every=2)
    train(eager)
    compiled = dataclasses.replace(eager, compile=True, out=str(tmp_path / "compiled"))
    train(compiled)
    a, b = load(Path(eager.out) / "last.pt"), load(Path(compiled.out) / "last.pt")
    assert_same_state(a["G"], b["G"], atol=1e-4, rtol=1e-3, where="G")


def test_resume_refuses_other_settings(tmp_path):
    config = tiny(tmp_path, loss="lsgan", steps=1)
    train(config)
    with pytest.raises(ValueError, match="batch: 8 -> 16"):
        train(dataclasses.replace(config, steps=2, batch=16, resume=True))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(dataclasses.replace(config, out=str(tmp_path / "empty"), resume=True))


def test_fresh_run_never_replaces_a_checkpoint(tmp_path):
    config = tiny(tmp_path, loss="lsgan", steps=1)
    train(config)
    before = (Path(config.out) / "last.pt").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        train(config)
    assert (Path(config.out) / "last.pt").read_bytes() == before
    train(dataclasses.replace(config, overwrite=True, seed=3))
    assert (Path(config.out) / "last.pt").read_bytes() != before


def test_periodic_metrics_are_logged(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path / "cache"))  # the real features
    config = tiny(tmp_path, loss="lsgan", steps=4, eval_every=2, eval_n=300, log_every=1)
    config = dataclasses.replace(config, eval_metrics="fid,pr,modes")
    result = train(config)
    rows = {int(r["step"]): r for r in result.history}
    for step in (2, 4):
        assert {"fid", "precision", "recall", "classes_hit"} <= rows[step].keys()
        assert float(rows[step]["fid"]) > 0
    assert "fid" not in rows[1]
    assert list((tmp_path / "cache" / "features").glob("digits-train-n300-28px-digits.v*.pt"))


@pytest.mark.parametrize("reference", [False, True])
def test_d_step_computes_sigma_once(tmp_path, monkeypatch, reference):
    """D's spectral norms run their power iteration once per D step (not once per forward
    on real, fake and interpolated images); the reference models keep torch's."""
    from gankernels.nn.spectral_norm import SpectralNorm

    held = []
    hold = SpectralNorm.hold
    monkeypatch.setattr(SpectralNorm, "hold", lambda self, w: (held.append(self), hold(self, w)))
    config = tiny(tmp_path, model="sngan", loss="wgan-gp", n_critic=2, steps=3, reference=reference)
    train(config)
    if reference:
        assert held == []
        return
    G, D = tasks_mod.build_networks(load(tmp_path / "run" / "last.pt")["build"])
    layers = [m for m in D.modules() if isinstance(m, SpectralNorm)]
    assert layers and len(held) == 3 * 2 * len(layers)  # steps x D steps x layers


@pytest.mark.parametrize("lr_d", [None, 1e-3])
def test_sngan_r1_defaults_to_two_time_scales(tmp_path, lr_d):
    """SNGAN under R1 trains G at 2e-4 and D at 8e-4 (not R1's 2e-3) unless told."""
    config = tiny(tmp_path, model="sngan", conditional=True, steps=1, lr_d=lr_d)
    assert config.loss == "r1"
    train(config)
    ckpt = load(tmp_path / "run" / "last.pt")
    lazy = 16 / 17  # lazy R1 every 16 D steps scales D's lr (StyleGAN2)
    assert ckpt["opt_g"]["param_groups"][0]["lr"] == pytest.approx(2e-4)
    assert ckpt["opt_d"]["param_groups"][0]["lr"] == pytest.approx((lr_d or 8e-4) * lazy)


@pytest.mark.parametrize("lr_g", [None, 1e-3])
def test_stylegan2_r1_defaults_to_its_measured_rate(tmp_path, lr_g):
    """StyleGAN2 under R1 trains G and D at 2e-2 (not R1's 2e-3) at its default width of
    16 unless told, and at 2e-2 * sqrt(16 / width) at other widths."""
    config = tiny(tmp_path, model="stylegan2", steps=1, lr_g=lr_g, width=None)
    assert config.loss == "r1"
    train(config)
    ckpt = load(tmp_path / "run" / "last.pt")
    lazy = 16 / 17  # lazy R1 every 16 D steps scales D's lr (StyleGAN2)
    assert ckpt["opt_g"]["param_groups"][0]["lr"] == pytest.approx(lr_g or 2e-2)
    assert ckpt["opt_d"]["param_groups"][0]["lr"] == pytest.approx(2e-2 * lazy)
    wide = make_task(tiny(tmp_path, model="stylegan2", width=64), get_loss("r1"), Dist(),
                     torch.device("cpu"))  # fmt: skip
    assert (wide.lr_g, wide.lr_d) == (pytest.approx(1e-2), pytest.approx(1e-2))
    other = tiny(tmp_path, model="stylegan2", loss="nonsaturating", width=None)
    task = make_task(other, get_loss("nonsaturating"), Dist(), torch.device("cpu"))
    assert task.lr_g is None and task.lr_d is None  # other objectives keep their own
    assert task.build_info["width"] is None  # and the model's own width (64)


@pytest.mark.parametrize("width", [None, 8])
def test_stylegan2_r1_defaults_to_the_measured_width(tmp_path, width):
    """The StyleGAN2 + R1 recipe's width (16) unless --width is given."""
    config = tiny(tmp_path, model="stylegan2", width=width)
    said = []
    task = make_task(config, get_loss("r1"), Dist(), torch.device("cpu"), log=said.append)
    assert task.build_info["width"] == (width or 16)
    assert task.G.const.shape[0] == (width or 16)
    assert any(f"width {width or 16}" in s for s in said)


@pytest.mark.parametrize("width", [None, 8])
def test_sngan_r1_defaults_to_the_measured_width(tmp_path, width):
    """The SNGAN + R1 recipe's width (32) unless --width is given; the checkpoint records
    the width built so that eval and resume rebuild the same networks."""
    config = tiny(tmp_path, model="sngan", conditional=True, steps=1, width=width)
    said = []
    task = make_task(config, get_loss("r1"), Dist(), torch.device("cpu"), log=said.append)
    assert task.build_info["width"] == (width or 32)
    assert task.G.width == (width or 32)
    assert any(f"width {width or 32}" in s for s in said)
    dcgan = make_task(tiny(tmp_path, model="dcgan", conditional=True, width=None),
                      get_loss("r1"), Dist(), torch.device("cpu"))  # fmt: skip
    assert dcgan.build_info["width"] is None  # other models keep their own default


def test_r1_gamma_defaults_to_the_ada_heuristic(tmp_path):
    config = tiny(tmp_path, model="dcgan", loss="r1")
    said = []
    task = make_task(config, get_loss("r1"), Dist(), torch.device("cpu"), log=said.append)
    assert task.loss.penalty_weight == pytest.approx(0.0002 * 28**2 / 8)
    assert task.loss.reg_every == 16 and any("gamma 0.0196" in s for s in said)
    config = tiny(tmp_path, model="stylegan2")
    assert config.loss == "r1"  # StyleGAN2's objective, with its own measured coefficient
    said = []
    task = make_task(config, get_loss("r1"), Dist(), torch.device("cpu"), log=said.append)
    assert task.loss.penalty_weight == pytest.approx(0.004 * 28**2 / 8)
    assert any("gamma 0.392" in s for s in said)
    conditional = tiny(tmp_path, model="dcgan", conditional=True, image_size=32, batch=16)
    assert conditional.loss == "r1"
    task = make_task(conditional, get_loss("r2"), Dist(), torch.device("cpu"))
    assert task.loss.penalty_weight == pytest.approx(0.0002 * 32**2 / 16)
    chosen = tiny(tmp_path, model="stylegan2", penalty_weight=1.0)
    task = make_task(chosen, get_loss("r1", penalty_weight=1.0), Dist(), torch.device("cpu"))
    assert task.loss.penalty_weight == 1.0
    gp = make_task(tiny(tmp_path, model="dcgan"), get_loss("wgan-gp"), Dist(), torch.device("cpu"))
    assert gp.loss.penalty_weight == 10.0  # WGAN-GP's lambda is not a gamma
