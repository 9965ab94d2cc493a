"""Spectral norm under DistributedDataParallel (gloo, 2 CPU processes): buffers stay in
sync, two forwards before one backward work, and the result equals one process on the
same global batch."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import gankernels as gk

STEPS, BATCH = 3, 8


def discriminator():
    torch.manual_seed(0)
    return nn.Sequential(
        gk.nn.SNConv2d(1, 8, 4, 2, 1),
        nn.LeakyReLU(0.2),
        gk.nn.SNConv2d(8, 8, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        gk.nn.SNLinear(8 * 4 * 4, 1),
    ).double()


def batches():
    g = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        real = torch.randn(BATCH, 1, 16, 16, generator=g, dtype=torch.float64)
        fake = torch.randn(BATCH, 1, 16, 16, generator=g, dtype=torch.float64)
        yield real, fake


def train(model, shard=slice(None)):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for real, fake in batches():
        opt.zero_grad()
        # Two forwards before one backward, as in a GAN discriminator step.
        loss = torch.relu(1 - model(real[shard])).mean() + torch.relu(1 + model(fake[shard])).mean()
        loss.backward()
        opt.step()


def worker(rank, world, port, out_path):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.set_num_threads(1)
        model = nn.parallel.DistributedDataParallel(discriminator())
        per = BATCH // world
        train(model, slice(rank * per, (rank + 1) * per))
        state = {k: v.clone() for k, v in model.module.state_dict().items()}
        gathered = [None] * world
        dist.all_gather_object(gathered, state)
        if rank == 0:
            torch.save(gathered, out_path)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_ddp_two_processes_match_one(tmp_path):
    out_path = tmp_path / "states.pt"
    mp.spawn(worker, args=(2, free_port(), str(out_path)), nprocs=2, join=True)
    states = torch.load(out_path)

    single = discriminator()
    train(single)
    want = single.state_dict()
    assert any(k.endswith("_u") for k in want)
    for rank_state in states:
        assert set(rank_state) == set(want)
        for key, value in want.items():
            torch.testing.assert_close(rank_state[key], value, rtol=1e-9, atol=1e-12, msg=key)
