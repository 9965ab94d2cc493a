"""Train the Fashion-MNIST scoring classifier once and cache it (gankernels.metrics.fashion):

python -m gankernels.metrics.train_fashion [--force]
"""

from __future__ import annotations

import argparse

from .fashion import classifier_path, load_fashion_classifier, save_fashion_classifier


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gankernels.metrics.train_fashion",
        description="Train the Fashion-MNIST scoring classifier once and cache it.",
    )
    parser.add_argument("--force", action="store_true", help="train again even if cached")
    args = parser.parse_args(argv)
    if args.force or not classifier_path().is_file():
        save_fashion_classifier()
    model = load_fashion_classifier(train=False)
    print(f"{classifier_path()}: test accuracy {model.test_accuracy:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
