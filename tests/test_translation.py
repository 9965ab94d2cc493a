"""pix2pix and CycleGAN in the training loop: their step losses equal the papers'
formulas (float64), runs resume exactly (image pools included), and the translate and
eval commands read their checkpoints. Data: small generated pairs:/unpaired: folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gankernels import checkpoint
from gankernels.cli import main
from gankernels.losses import get_loss
from gankernels.tasks import Nets, make_task
from gankernels.train import Dist, TrainConfig, train

SIZE = 32


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    """Side-by-side A|B pairs: A a grey blob, B the same blob inverted and coloured."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for split, count in (("train", 24), ("test", 70)):
        for i in range(count):
            a = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            b = (255 - a) // 2 + rng.integers(0, 64, (1, 1, 3), dtype=np.uint8)
            _write(root / split / f"{i:03d}.png", np.concatenate([a, b], axis=1))
    return root


@pytest.fixture(scope="module")
def unpaired_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("unpaired")
    rng = np.random.default_rng(1)
    for side, count in (("a", 20), ("b", 13)):
        for i in range(count):
            _write(root / side / f"{i}.png", rng.integers(0, 256, (SIZE, SIZE, 3), np.uint8))
    return root


def tiny(tmp_path, **overrides) -> TrainConfig:
    values = dict(
        image_size=SIZE, batch=4, width=8, steps=4, log_every=2, sample_every=2, ckpt_every=2,
        out=str(tmp_path / "run"), progress=False, ema=0.9,
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def _double_task(config):
    task = make_task(config, get_loss(config.loss), Dist(), torch.device("cpu"), log=lambda *a: 0)
    G, D = task.G.double(), task.D.double()
    return task, Nets(G, D, G, D)


def test_pix2pix_losses_are_the_papers(tmp_path, pairs_dir):
    """G: GAN term + lambda_L1 |G(a) - b|; D: the GAN loss on (b, a) vs (G(a), a)."""
    config = tiny(tmp_path, model="pix2pix", data=f"pairs:{pairs_dir}", l1_weight=7.0)
    task, nets = _double_task(config)
    a, b = (x.double() for x in task.next_batch())
    torch.manual_seed(3)
    g_loss, (l1,) = task.g_losses(nets, 0, (a, b))
    torch.manual_seed(3)  # the same dropout masks
    fake = nets.G(a)
    expected_l1 = (fake - b).abs().mean()
    expected = 7.0 * expected_l1 + torch.nn.functional.softplus(-nets.D(fake, a)).mean()
    torch.testing.assert_close(l1, expected_l1, rtol=1e-12, atol=0)
    torch.testing.assert_close(g_loss, expected, rtol=1e-12, atol=0)
    torch.manual_seed(4)
    d_loss, penalty = task.d_losses(nets, 0, 0, (a, b))
    torch.manual_seed(4)
    fake = nets.G(a)
    f = torch.nn.functional.softplus
    expected = f(-nets.D(b, a)).mean() + f(nets.D(fake, a)).mean()
    torch.testing.assert_close(d_loss, expected, rtol=1e-12, atol=0)
    assert float(penalty) == 0.0


def test_cyclegan_losses_are_the_papers(tmp_path, unpaired_dirs):
    """G: LSGAN terms of both directions + 10 x cycle + 5 x identity; D: LSGAN of each
    domain's D on its reals vs pooled fakes."""
    data = f"unpaired:{unpaired_dirs / 'a'},{unpaired_dirs / 'b'}"
    config = tiny(tmp_path, model="cyclegan", data=data)
    task, nets = _double_task(config)
    assert task.cycle_weight == 10.0 and task.identity_weight == 5.0
    a, b = (x.double() for x in task.next_batch())
    G, D = nets.G, nets.D
    g_loss, (cycle, identity) = task.g_losses(nets, 0, (a, b))
    fb, fa = G(a, "a2b"), G(b, "b2a")
    gan = 0.5 * (D(fb, "b") - 1).square().mean() + 0.5 * (D(fa, "a") - 1).square().mean()
    exp_cycle = (G(fb, "b2a") - a).abs().mean() + (G(fa, "a2b") - b).abs().mean()
    exp_identity = (G(b, "a2b") - b).abs().mean() + (G(a, "b2a") - a).abs().mean()
    torch.testing.assert_close(cycle, exp_cycle, rtol=1e-12, atol=0)
    torch.testing.assert_close(identity, exp_identity, rtol=1e-12, atol=0)
    torch.testing.assert_close(g_loss, gan + 10 * exp_cycle + 5 * exp_identity, rtol=1e-12, atol=0)
    d_loss, _ = task.d_losses(nets, 0, 0, (a, b))  # the pools are filling: fakes pass through
    fa, fb = G(b, "b2a"), G(a, "a2b")

    def ls(real, fake):
        return 0.5 * (real - 1).square().mean() + 0.5 * fake.square().mean()

    expected = ls(D(a, "a"), D(fa, "a")) + ls(D(b, "b"), D(fb, "b"))
    torch.testing.assert_close(d_loss, expected, rtol=1e-12, atol=0)


def _assert_same_run(one: dict, two: dict, model: str) -> None:
    """Two checkpoints hold the same networks (and CycleGAN the same image pools)."""
    for key in ("G", "D", "G_ema"):
        for name, value in one[key].items():
            assert torch.equal(value, two[key][name]), f"{key}.{name}"
    if model == "cyclegan":
        for p, q in zip(one["task_state"][0]["pools"], two["task_state"][0]["pools"], strict=True):
            assert torch.equal(p["images"], q["images"])


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_translation_runs_resume_exactly(tmp_path, pairs_dir, model):
    data = f"pairs:{pairs_dir}"
    straight = tiny(tmp_path / "a", model=model, data=data, pool_size=3)
    train(straight)
    half = tiny(tmp_path / "b", model=model, data=data, pool_size=3, steps=2)
    train(half)
    rest = tiny(tmp_path / "b", model=model, data=data, pool_size=3, resume=True)
    train(rest)
    one = checkpoint.load(tmp_path / "a" / "run" / "last.pt")
    two = checkpoint.load(tmp_path / "b" / "run" / "last.pt")
    _assert_same_run(one, two, model)
    names = ("samples.png", "losses.png", "log.csv")
    assert all((tmp_path / "b" / "run" / n).is_file() for n in names)


def test_l1_only_pix2pix_leaves_d_alone(tmp_path, pairs_dir):
    config = tiny(tmp_path, model="pix2pix", data=f"pairs:{pairs_dir}", gan_weight=0.0, steps=2)
    result = train(config)
    ckpt = checkpoint.load(tmp_path / "run" / "last.pt")
    assert not ckpt["opt_d"]["state"]  # D never took a step
    assert all(float(row["loss_d"]) == 0.0 for row in result.history)


def test_translate_and_eval_commands(tmp_path, pairs_dir, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "pix2pix", "--data", f"pairs:{pairs_dir}", "--image-size"]
    args += [str(SIZE), "--batch", "4", "--width", "8", "--steps", "2", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    ckpt = str(out / "last.pt")
    # a file and a folder
    assert main(["translate", "--ckpt", ckpt, "--input", str(pairs_dir / "test" / "000.png"),
                 "--out", str(tmp_path / "one")]) == 0  # fmt: skip
    with Image.open(tmp_path / "one" / "000.png") as img:
        assert img.size == (SIZE, SIZE) and img.mode == "RGB"
    assert main(["translate", "--ckpt", ckpt, "--input", str(pairs_dir / "test"),
                 "--out", str(tmp_path / "all")]) == 0  # fmt: skip
    assert len(list((tmp_path / "all").glob("*.png"))) == 70
    capsys.readouterr()
    assert main(["translate", "--ckpt", ckpt, "--input", str(pairs_dir), "--out", "x",
                 "--direction", "b2a"]) == 2  # fmt: skip
    assert "trained a2b" in capsys.readouterr().err
    report = tmp_path / "eval.json"
    assert main(["eval", "--ckpt", ckpt, "--json", str(report), "--no-progress",
                 "--no-cache"]) == 0  # fmt: skip
    scores = json.loads(report.read_text())
    for key in ("l1", "psnr", "ssim", "fid", "kid"):
        assert np.isfinite(scores[key]), key
    assert scores["num_pairs"] == 70 and "64 features" in scores["extractor"]
    printed = capsys.readouterr().out
    assert "PSNR" in printed and "SSIM" in printed
    # the identity baseline scored the same way
    argv = ["eval", "--identity", "--data", f"pairs:{pairs_dir}", "--image-size", "32"]
    argv += ["--json", str(tmp_path / "id.json"), "--no-progress", "--no-cache"]
    assert main(argv) == 0
    identity = json.loads((tmp_path / "id.json").read_text())
    assert identity["model"] == "identity" and identity["l1"] > 0.1
    # a translation checkpoint is not a noise-to-image generator
    capsys.readouterr()
    assert main(["generate", "--ckpt", ckpt, "--out", str(tmp_path / "g.png")]) == 2
    assert "holds a pix2pix model" in capsys.readouterr().err


def test_wrong_kind_of_checkpoint_for_translate(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "gan"
    args = ["train", "--data", "digits", "--batch", "8", "--width", "8", "--steps", "1"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    argv = ["translate", "--ckpt", str(out / "last.pt"), "--input", "x", "--out", "y"]
    assert main(argv) == 2
    assert "holds a dcgan model" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_timing_the_memory_format_leaves_the_run_unchanged(tmp_path, pairs_dir, model, monkeypatch):
    """The format is timed on the run's own step (pix2pix's dropout, CycleGAN's image pools
    and two data streams); all of it is put back, so the run equals one told the format."""
    import dataclasses

    from test_layout import _fake_choose

    import gankernels.train as train_mod

    told = tiny(tmp_path / "told", model=model, data=f"pairs:{pairs_dir}", pool_size=3)
    told = dataclasses.replace(told, channels_last=True)
    train(told)
    monkeypatch.setattr(train_mod.layout, "choose", _fake_choose(True, []))
    timed = dataclasses.replace(told, channels_last=None, out=str(tmp_path / "timed"))
    train(timed)
    one = checkpoint.load(f"{told.out}/last.pt")
    two = checkpoint.load(f"{timed.out}/last.pt")
    assert two["channels_last"] is True
    _assert_same_run(one, two, model)
