"""Whole training steps through `train()`: DCGAN + WGAN-GP, SNGAN + hinge, the
StyleGAN2-style G + R1, pix2pix and CycleGAN, plain torch (`--reference`) against
gankernels, on the device of GK_BENCH_DEVICE. Each round is a short run (8 steps of one D
and one G step; digits scaled to 28x28, the translation cases on their own data at 32 px)
from the same seed; `gankernels bench --train` reports the steady-state images/s instead."""

import os

import pytest
import torch

from gankernels.bench.train import CASE_DATA, TRAIN_CASES, provider_config
from gankernels.data import DatasetNotInstalled, load_dataset
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
    data, image_size = CASE_DATA.get(case, ("digits", 28))
    try:
        # digits ships as one set, loaded by split="train"
        load_dataset(data, split="train" if data == "digits" else "test")
    except DatasetNotInstalled as err:
        pytest.skip(str(err))
    steps = 2 if QUICK else 8
    config = TrainConfig(
        model=model,
        loss=loss,
        data=data,
        image_size=image_size,
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
