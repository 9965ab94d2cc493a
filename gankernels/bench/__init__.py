"""`gankernels bench`: the benchmark harness as a package.

    core     configuration, cases, providers, timing, environment, results files, plots
    sn       spectral norm cases (--ops sn)
    penalty  gradient-penalty and critic-step cases (--ops penalty)
    conv     conv-block cases (--ops conv)
    train    whole training steps (--train, --profile)
    metrics  FID and feature extraction (--metrics)

The families import the core, never the other way round; importing this package
registers the op families, in the order `--ops` lists them.
"""

from __future__ import annotations

import argparse

# Importing a family registers its ops; `--ops` lists them in this order.
# isort: off
from . import core, sn, penalty, conv  # noqa: F401
# isort: on

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    core.add_arguments(parser)
    from . import train

    train.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.train:
        from . import train

        return train.run(args)
    if args.metrics:
        from . import metrics

        return metrics.run(args)
    return core.run_ops(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gankernels bench", description="Time gankernels ops against torch."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
