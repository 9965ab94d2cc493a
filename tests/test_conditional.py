"""Conditional generation in the loop: the matching-aware D's loss (GAN-CLS) against its
formula in float64 for labels and text, GAN-INT in G's loss, conditional batch norm
keeping z in play, and `gankernels generate` for every kind of condition."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gankernels import models
from gankernels.cli import main
from gankernels.losses import get_loss
from gankernels.tasks import Nets, make_task
from gankernels.train import Dist, TrainConfig, train

pytest.importorskip("sklearn", reason="the runs read sklearn's digits")

TINY = dict(
    data="digits", image_size=28, batch=8, width=8, z_dim=8, steps=2, log_every=1,
    sample_every=100, ckpt_every=100, progress=False, loss="hinge", n_critic=1,
)  # fmt: skip


@pytest.fixture
def float64():
    """Models, noise and batches in float64 (to_model_range keeps float32 batches)."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _double_task(tmp_path, **overrides):
    config = TrainConfig(**{**TINY, "out": str(tmp_path / "run"), **overrides})
    task = make_task(config, get_loss(config.loss), Dist(), torch.device("cpu"), log=lambda *a: 0)
    G, D = task.G.double(), task.D.double()
    return task, Nets(G, D, G, D)


def test_label_matching_loss_is_gan_cls(tmp_path, float64):
    """hinge: relu(1 - D(x, y)) + (relu(1 + D(G(z, y'), y')) + relu(1 + D(x, y_wrong))) / 2
    with y_wrong != y for every real image."""
    task, nets = _double_task(tmp_path, conditional=True)
    assert task.matching
    real, y = task.next_batch()
    real = real.double()
    seen = {}
    forward = nets.D.forward

    def spy(x, c):
        seen.setdefault("calls", []).append(c.clone())
        return forward(x, c)

    nets.D.forward = spy
    torch.manual_seed(0)
    d_loss, _ = task.d_losses(nets, 5, 0, (real, y))
    nets.D.forward = forward
    y_real, y_fake, y_wrong = seen["calls"]
    assert torch.equal(y_real, y) and (y_wrong != y).all()
    z, _ = task.noise(5, 0)
    fake = nets.G(z, y_fake)
    expected = F.relu(1 - nets.D(real, y)).mean() + 0.5 * (
        F.relu(1 + nets.D(fake, y_fake)).mean() + F.relu(1 + nets.D(real, y_wrong)).mean()
    )
    torch.testing.assert_close(d_loss, expected, rtol=1e-12, atol=0)
    task_off, nets_off = _double_task(tmp_path, conditional=True, matching=False)
    d_off, _ = task_off.d_losses(nets_off, 5, 0, (real, y))
    assert not torch.allclose(d_off, d_loss)


def test_cbn_generator_depends_on_z_and_label():
    """Conditional batch norm modulates the layers with the label; z alone enters the
    first layer. Both change the output (gains start at 1, so train them a little)."""
    G, _ = models.build_models("dcgan", img_size=28, num_classes=10, width=8, z_dim=16)
    assert G.g_cond == "cbn" and G.net[0].in_channels == 16
    for m in G.modules():
        if hasattr(m, "gain_weight"):
            torch.nn.init.normal_(m.gain_weight, 0, 0.3)
            torch.nn.init.normal_(m.shift_weight, 0, 0.3)
    G.eval()
    z = torch.randn(10, 16)
    with torch.no_grad():
        vary_y = G(z[:1].expand(10, -1), torch.arange(10))
        vary_z = G(z, torch.full((10,), 3))
    assert (vary_y - vary_y.mean(0)).abs().mean() > 1e-3
    assert (vary_z - vary_z.mean(0)).abs().mean() > 1e-3
    concat, _ = models.build_models("dcgan", img_size=28, num_classes=10, width=8, g_cond="concat")
    assert concat.net[0].in_channels == 200  # z and the label embedding side by side


@pytest.mark.parametrize("model", ["dcgan", "sngan"])
def test_condition_vectors_enter_on_the_unit_sphere(model):
    """G and D see a condition vector's direction only: its length (an encoder's scale)
    changes nothing, while its direction does."""
    G, D = models.build_models(model, img_size=32, cond_dim=12, width=8, z_dim=16)
    for m in [*G.modules(), *D.modules()]:
        if hasattr(m, "gain_weight"):
            torch.nn.init.normal_(m.gain_weight, 0, 0.3)
    G.eval(), D.eval()
    z, y = torch.randn(4, 16), torch.randn(4, 12)
    with torch.no_grad():
        x = G(z, y)
        torch.testing.assert_close(G(z, 7.5 * y), x)
        torch.testing.assert_close(D(x, 0.1 * y), D(x, y))
        assert (G(z, y.flip(0)) - x).abs().max() > 0.01 * x.abs().max()
        logits = D(x, y)
        assert (D(x, y.flip(0)) - logits).abs().max() > 0.01 * logits.abs().max()


@pytest.fixture(scope="module")
def captions_installed():
    from gankernels.data import DatasetNotInstalled, load_dataset

    try:
        load_dataset("fashion-mnist:captions", "test")
    except DatasetNotInstalled as err:
        pytest.skip(str(err))


def test_text_matching_and_gan_int(tmp_path, captions_installed, float64):
    task, nets = _double_task(
        tmp_path, data="fashion-mnist:captions", condition="text", text_encoder="bow"
    )
    assert task.matching and task.gan_int and task.source.trainable
    assert "cond_encoder.embedding.weight" in nets.D.state_dict()
    real, index = task.next_batch()
    real = real.double()
    nets.D.cond_encoder.double()
    d_loss, _ = task.d_losses(nets, 3, 0, (real, index))
    d_loss.backward()  # D's loss trains the text encoder
    assert nets.D.cond_encoder.embedding.weight.grad.abs().sum() > 0
    g_loss, _ = task.g_losses(nets, 3, (real, index))
    assert torch.isfinite(g_loss)


def test_generate_for_each_condition(tmp_path, capsys):
    out = tmp_path / "uncond"
    args = ["train", "--data", "digits", "--batch", "8", "--width", "8", "--steps", "1"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    assert main(["generate", "--ckpt", str(out / "last.pt"), "--n", "5",
                 "--out", str(tmp_path / "u.png")]) == 0  # fmt: skip
    assert (tmp_path / "u.png").is_file()
    capsys.readouterr()
    assert main(["generate", "--ckpt", str(out / "last.pt"), "--label", "1",
                 "--out", str(tmp_path / "x.png")]) == 2  # fmt: skip
    assert "unconditional" in capsys.readouterr().err
    cond = tmp_path / "cond"
    assert main([*args, "--conditional", "--out", str(cond), "--no-progress"]) == 0
    ckpt = str(cond / "last.pt")
    assert main(["generate", "--ckpt", ckpt, "--label", "3", "--out", str(tmp_path / "3.png")]) == 0
    capsys.readouterr()
    assert main(["generate", "--ckpt", ckpt, "--label", "12", "--out", "x.png"]) == 2
    assert "unknown label 12" in capsys.readouterr().err
    assert main(["generate", "--ckpt", ckpt, "--out", "x.png"]) == 2
    assert "--label" in capsys.readouterr().err


def test_condition_errors(tmp_path):
    with pytest.raises(ValueError, match="condition must be one of"):
        train(TrainConfig(**{**TINY, "out": str(tmp_path), "condition": "smell"}))
    with pytest.raises(ValueError, match="captioned data set"):
        train(TrainConfig(**{**TINY, "out": str(tmp_path), "condition": "text"}))
    with pytest.raises(ValueError, match="gan_int"):
        train(TrainConfig(**{**TINY, "out": str(tmp_path), "conditional": True, "gan_int": True}))


@pytest.mark.parametrize("loss", ["r1", "r2", "wgan-gp"])
def test_penalties_with_the_matching_aware_d(tmp_path, loss):
    """The mismatched negatives sit beside the fakes: R1, R2 and WGAN-GP still see one
    logit per real or fake image."""
    config = TrainConfig(
        **{**TINY, "out": str(tmp_path), "conditional": True, "loss": loss, "reg_every": 1}
    )
    result = train(config)
    assert all(float(r["penalty"]) > 0 for r in result.history)


def _fake_clips(split, log=print, workers=None):
    """Noise bursts whose pitch says the digit: stands in for the speech caches."""
    from gankernels.data.speech import SpeechClips

    n = 40 if split == "train" else 10
    labels = torch.arange(n) % 10
    t = torch.arange(4000) / 16000
    clips = torch.sin(2 * torch.pi * (200 + 80 * labels[:, None]) * t) * 0.3
    return SpeechClips(clips.float(), labels, torch.zeros(n, dtype=torch.int64), ("tone",),
                       16000, split)  # fmt: skip


def test_sound_condition_trains_a_scratch_encoder_through_d(tmp_path, monkeypatch):
    from gankernels.data import speech

    monkeypatch.setattr(speech, "load_spoken_digits", _fake_clips)
    config = TrainConfig(**{**TINY, "out": str(tmp_path), "condition": "sound"},
                         sound_encoder="scratch")  # fmt: skip
    task = make_task(config, get_loss("hinge"), Dist(), torch.device("cpu"), log=lambda *a: 0)
    nets = Nets(task.G, task.D, task.G, task.D)
    assert task.matching and not task.gan_int and task.source.trainable
    real, labels = task.next_batch()
    d_loss, _ = task.d_losses(nets, 0, 0, (real, labels))
    d_loss.backward()
    grads = [p.grad for p in nets.D.cond_encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert task.fixed_y.shape == (80, task.source.dim)  # 10 held-out clips x 8 samples


def test_eval_scores_a_text_run_on_held_out_captions(tmp_path, captions_installed, monkeypatch):
    """`gankernels eval` on a text run: fidelity, FID, precision / recall of samples for
    the test captions (the digit classifier stands in for the Fashion-MNIST one, which is
    trained on first use)."""
    import importlib.util
    import json

    from gankernels import metrics

    if importlib.util.find_spec("digit_recognizer") is None:
        pytest.skip("the digit classifier's package (digit-recognizer-py) is not installed")
    make = metrics.make_extractor
    monkeypatch.setattr(metrics, "make_extractor", lambda name, *a, **k: make("digits", *a, **k))
    out = tmp_path / "text"
    args = ["train", "--data", "fashion-mnist:captions", "--condition", "text", "--text-encoder"]
    args += ["bow", "--batch", "8", "--width", "8", "--steps", "2", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    report = tmp_path / "eval.json"
    assert main(["eval", "--ckpt", str(out / "last.pt"), "--n", "300", "--no-progress",
                 "--json", str(report)]) == 0  # fmt: skip
    scores = json.loads(report.read_text())
    assert scores["condition"] == "text" and 0 <= scores["text_fidelity"] <= 1
    for key in ("fid", "precision", "recall"):
        assert key in scores
    text = ["generate", "--ckpt", str(out / "last.pt"), "--text", "a dark wide pullover"]
    assert main([*text, "--out", str(tmp_path / "p.png")]) == 0
