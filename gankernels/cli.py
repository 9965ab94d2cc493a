"""Command line: `gankernels info`, `gankernels bench`, `gankernels train`, `gankernels eval`
(also `python -m gankernels ...`)."""

from __future__ import annotations

import argparse
import os
import platform
import sys


def info() -> int:
    import torch

    from . import __version__, _backend

    print(f"gankernels {__version__}")
    print(f"python     {platform.python_version()} ({sys.executable})")
    print(f"torch      {torch.__version__} (CUDA {torch.version.cuda or 'none'})")
    try:
        import triton

        print(f"triton     {triton.__version__}")
    except ImportError:
        print("triton     not installed")
    print(
        f"cpu        {_backend.cpu_name()}, {os.cpu_count()} logical cores, "
        f"torch threads {torch.get_num_threads()}"
    )
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"cuda:{i}     {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB")
    else:
        print("cuda       no device")
    print(
        f"backend    {_backend.get_backend()} (GANKERNELS_BACKEND="
        f"{os.environ.get('GANKERNELS_BACKEND', 'unset')})"
    )
    print("backends:")
    for name, (ok, why) in _backend.availability().items():
        print(f"  {name:<10} {'yes' if ok else 'no '}  {why}")
    print("validated:")
    for name, how in _backend.validation().items():
        print(f"  {name:<10} {how}")
    print(f"auto       cuda tensors: {', '.join(_backend.auto_order('cuda'))} (in that order)")
    from . import fusion

    print(fusion.info_line())
    return 0


# Subcommands with their own modules: (name, module, one-line summary).
COMMANDS = (
    ("train", "train_cli", "train a GAN with the fused kernels (torchrun for several devices)"),
    ("eval", "eval_cli", "FID, KID, IS, precision/recall, mode coverage; L1/PSNR/SSIM for "
     "translation"),
    ("translate", "translate_cli", "run a trained pix2pix or CycleGAN over image files"),
    ("generate", "generate_cli", "samples of a trained generator (with a label, text or sound)"),
)  # fmt: skip


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the user asked for something that cannot be done (bad value,
    missing file or package): one line and exit status 2, never a traceback."""
    from .data import DatasetNotInstalled
    from .metrics import ExtractorNotInstalled

    return (ValueError, OSError, DatasetNotInstalled, ExtractorNotInstalled)


def main(argv: list[str] | None = None) -> int:
    import importlib

    parser = argparse.ArgumentParser(
        prog="gankernels", description="Fused GAN kernels: training, evaluation, benchmarks."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, devices and which backends are available (and why not)")
    bench = sub.add_parser("bench", help="benchmark the kernels against PyTorch and torch.compile")
    from . import bench as bench_cli

    bench_cli.add_arguments(bench)
    modules = {"bench": bench_cli}
    for name, module_name, summary in COMMANDS:
        module = importlib.import_module(f"gankernels.{module_name}")
        command = sub.add_parser(
            name,
            help=summary,
            description=module.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        modules[name] = module
    args = parser.parse_args(argv)
    if args.command == "info":
        return info()
    try:
        return modules[args.command].run(args)
    except user_errors() as err:
        if os.environ.get("GANKERNELS_DEBUG") == "1":
            raise
        print(f"gankernels {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
