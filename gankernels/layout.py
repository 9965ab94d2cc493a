"""The memory format a training run keeps its networks and batches in: contiguous (NCHW)
or channels_last (NHWC), chosen by measurement like the fused layers' implementations.

Which one is faster depends on the whole model, not on one layer: oneDNN runs a
convolution with one input channel (a grey image into D) several times faster in
channels_last, cuDNN's tensor cores want it for half precision, and a layer that cannot
take it makes copies. So a run of our build times its own training step (D's loss with
its penalty and G's loss, both backwards, no optimizer update) in both formats, a few
times each, and keeps channels_last only if it is faster by more than MARGIN. The step
runs on a batch that the loop then draws again: the data streams, random states, task
state (image pools) and network buffers are put back afterwards, so the run's numbers do
not depend on the measurement, only on the format chosen (to dtype tolerance).

Decisions follow the fusion mode (`gankernels.fusion`): 'auto' reads the disk cache
(the fusion decision file, keyed by the model, data shape, batch, dtype, device, threads
and backend) or measures; 'cached' reads it or keeps the rule; 'fixed', 'fused' and
'torch' keep the rule, contiguous (torch's default), so that they stay deterministic.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import _backend, fusion

MARGIN = 0.03  # channels_last must be 3 % faster (noise favours neither; ties: contiguous)
FORMATS = ("contiguous", "channels_last")


@dataclass(frozen=True)
class LayoutDecision:
    channels_last: bool
    source: str  # "measured", "cache", "rule", "asked" (the user's setting), ...
    contiguous_ms: float | None = None
    channels_last_ms: float | None = None

    def why(self) -> str:
        name = "channels_last" if self.channels_last else "contiguous"
        if self.contiguous_ms is None:
            how = {"rule": "fixed rule", "asked": "as asked"}.get(self.source, self.source)
            return f"{name} ({how})"
        times = f"step {self.channels_last_ms:.0f} ms vs {self.contiguous_ms:.0f} ms contiguous"
        if self.channels_last:
            return f"{name} ({times}, {self.source})"
        return f"{name} (channels_last {times}, {self.source})"


def key(what: str, device: torch.device, dtype: str) -> str:
    """The cache key of a training step's layout decision: `what` names the model, loss,
    data shape and batch; the device, threads and backend are added here."""
    return " | ".join(
        (
            "training step layout",
            what,
            dtype,
            f"{fusion._device_name(device)}, {torch.get_num_threads()} threads",
            f"backend {_backend.resolve(device)}",
        )
    )


def choose(
    run_step: Callable[[bool], None], cache_key: str, device: torch.device
) -> LayoutDecision:
    """The layout of a training step: run_step(channels_last) runs one step (without
    side effects) in that layout."""
    mode = fusion.get_fusion()
    if mode not in ("auto", "cached"):
        return LayoutDecision(False, "rule")
    entry = fusion._disk.get(cache_key)
    if entry is not None and entry.get("choice") in FORMATS:
        return LayoutDecision(
            entry["choice"] == "channels_last",
            "cache",
            entry.get("contiguous_ms"),
            entry.get("channels_last_ms"),
        )
    if mode == "cached":
        return LayoutDecision(False, "rule")
    ms = fusion.measure(lambda fmt: run_step(fmt == "channels_last"), device, FORMATS)
    channels_last = ms["channels_last"] < (1 - MARGIN) * ms["contiguous"]
    decision = LayoutDecision(channels_last, "measured", ms["contiguous"], ms["channels_last"])
    fusion._disk.put(
        cache_key,
        dict(
            choice=FORMATS[channels_last],
            contiguous_ms=round(ms["contiguous"], 2),
            channels_last_ms=round(ms["channels_last"], 2),
            date=_dt.datetime.now().isoformat(timespec="seconds"),
        ),
    )
    return decision
