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
        f"cpu        {_cpu_name()}, {os.cpu_count()} logical cores, "
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
    return 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gankernels", description="Fused GAN kernels: information and benchmarks."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, devices and which backends are available (and why not)")
    bench = sub.add_parser("bench", help="benchmark the kernels against PyTorch and torch.compile")
    from . import benchmark, eval_cli, train_cli

    benchmark.add_arguments(bench)
    for name, module, summary in (
        ("train", train_cli, "train a GAN with the fused kernels (torchrun for several devices)"),
        ("eval", eval_cli, "FID, KID, IS, precision/recall and mode coverage of a generator"),
    ):
        command = sub.add_parser(
            name,
            help=summary,
            description=module.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
    args = parser.parse_args(argv)
    if args.command == "info":
        return info()
    if args.command == "train":
        return train_cli.run(args)
    if args.command == "eval":
        return eval_cli.run(args)
    return benchmark.run(args)


if __name__ == "__main__":
    sys.exit(main())
