"""Whole training steps through `train()`: DCGAN + WGAN-GP, SNGAN + hinge and the
StyleGAN2-style G + R1, plain torch (`--reference`) against gankernels, on the device of
GK_BENCH_DEVICE. Each round is a short run (8 steps of one D and one G step on digits
scaled to 28x28) from the same seed; `gankernels bench --train` reports the steady-state
images/s on MNIST instead."""

import os

import pytest
import torch

from gankernels.benchmark_train import TRAIN_CASES, provider_config
from gankernels.train import TrainConfig, train

pytest.importorskip("sklearn", reason="the runs use sklearn's digits")
DEVICE = os.environ.get("GK_BENCH_DEVICE", "cpu")
QUICK = os.environ.get("GK_BENCH_QUICK", "0") == "1"


@pytest.mark.parametrize("provider", ["torch", "gk"])
@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_steps(benchmark, tmp_path, case, provider):
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.skip("GK_BENCH_DEVICE=cuda but torch sees no CUDA device")
    model, loss, what = TRAIN_CASES[case]
    steps = 2 if QUICK else 8
    config = TrainConfig(
        model=model,
        loss=loss,
        data="digits",
        image_size=28,
        width=8 if QUICK else None,
        batch=32,
        n_critic=1,
        steps=steps,
        log_every=steps,
        sample_every=10**9,
        ckpt_every=10**9,
        ema=0.0,
        device=DEVICE,
        progress=False,
        out=str(tmp_path / "run"),
    )
    benchmark.group = f"train {case}: {what}"
    benchmark.extra_info.update(provider=provider, steps=steps, batch=32, device=DEVICE)
    result = benchmark.pedantic(
        train, args=(provider_config(provider, config),), rounds=3 if not QUICK else 1
    )
    assert result.steps == steps
