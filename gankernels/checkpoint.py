"""Training checkpoints: written atomically, the one before kept, read with errors a user
can act on.

    save(out / "last.pt", ckpt)     # last.pt -> previous.pt, then the new last.pt
    ckpt = load(out / "last.pt")    # CheckpointError names the file and what is wrong

A checkpoint is a dict with at least "config" (the run's TrainConfig as a dict) and "G";
"build" holds the keyword arguments that rebuild the networks (see tasks.build_info_of).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .images import atomic_write

REQUIRED_KEYS = ("config", "G")
PREVIOUS_NAME = "previous.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, or not a gankernels checkpoint."""


def previous_path(path: str | os.PathLike) -> Path:
    return Path(path).with_name(PREVIOUS_NAME)


def save(path: str | os.PathLike, ckpt: dict) -> Path:
    """Write `ckpt` to `path` atomically; an existing file there becomes previous.pt, so a
    checkpoint that is later damaged still leaves a good one beside it."""
    path = Path(path)
    if path.exists():
        os.replace(path, previous_path(path))
    return atomic_write(path, lambda f: torch.save(ckpt, f))


def _read(path: Path, map_location) -> dict:
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # truncated zip, garbage bytes, foreign pickles: all unusable
        detail = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} is unreadable: it is truncated or not a torch file ({detail})"
        ) from None
    missing = [k for k in REQUIRED_KEYS if k not in ckpt] if isinstance(ckpt, dict) else None
    if missing is None or missing:
        what = f"missing {missing}" if missing else f"a {type(ckpt).__name__}, not a dict"
        raise CheckpointError(f"checkpoint {path} is not a gankernels training checkpoint ({what})")
    return ckpt


def load(path: str | os.PathLike, map_location="cpu", kind: str | None = None) -> dict:
    """The checkpoint at `path`. Only load files you trust (they are unpickled). kind
    "generation" or "translation" refuses a checkpoint of the other kind, naming the
    command that takes it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist{_previous_hint(path)}")
    try:
        ckpt = _read(path, map_location)
    except CheckpointError as err:
        raise CheckpointError(f"{err}{_previous_hint(path)}") from None
    if kind is not None and kind_of(ckpt) != kind:
        model = ckpt["config"].get("model")
        needs = {
            "generation": "a noise-to-image model (dcgan, sngan, stylegan2)",
            "translation": "a translation model (pix2pix, cyclegan)",
        }[kind]
        use = "gankernels translate" if kind == "generation" else "gankernels generate"
        raise CheckpointError(
            f"checkpoint {path} holds a {model} model, but this command needs {needs}; "
            f"use {use} for it"
        )
    return ckpt


def kind_of(ckpt: dict) -> str:
    """ "translation" or "generation"."""
    return "translation" if ckpt["config"].get("model") in ("pix2pix", "cyclegan") else "generation"


def _previous_hint(path: Path) -> str:
    previous = previous_path(path)
    if previous == path or not previous.is_file():
        return ""
    try:
        step = _read(previous, "cpu").get("step", "?")
    except CheckpointError:
        return f"; the previous checkpoint {previous} is damaged too"
    return (
        f"; the previous checkpoint {previous} (step {step}) is readable: copy it to {path} "
        "to continue from there"
    )


__all__ = ["CheckpointError", "save", "load", "kind_of", "previous_path"]
