"""Mode coverage from a classifier's labels for generated samples: which classes the
generator produces, how evenly, and plain-words flags for mode collapse and dropping.

A class counts as *hit* when it has at least `min_fraction` of the samples (default: a
tenth of its fair share 1/K, so 1 % for 10 classes; and at least one sample). Flags:
- collapsed: one class has more than `collapse_fraction` (default 50 %) of the samples,
  or, with 5 or more classes, at most 2 classes are hit;
- dropped: the classes that are not hit (never generated, or rarely: below min_fraction).
KL(histogram || uniform) = sum_c p_c log(p_c K) is 0 for perfectly balanced classes and
log K when every sample is one class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._checks import positive_int


@dataclass
class ModeReport:
    num_samples: int
    num_classes: int
    counts: list[int]  # samples per class
    histogram: list[float]  # fraction of samples per class
    classes_hit: list[int]  # classes with at least min_fraction of the samples
    kl_to_uniform: float  # KL(histogram || uniform), in nats; 0 .. log(num_classes)
    collapsed: bool
    dropped: list[int]  # classes below min_fraction (never or rarely generated)
    min_fraction: float
    class_names: tuple[str, ...] | None = None

    @property
    def never_generated(self) -> list[int]:
        return [c for c in self.dropped if self.counts[c] == 0]

    @property
    def rarely_generated(self) -> list[int]:
        return [c for c in self.dropped if self.counts[c] > 0]

    def _name(self, c: int) -> str:
        return self.class_names[c] if self.class_names else str(c)

    def _names(self, classes: list[int], shown: int = 20) -> str:
        names = ", ".join(self._name(c) for c in classes[:shown])
        return names if len(classes) <= shown else f"{names}, ... ({len(classes)} in all)"

    def describe(self) -> str:
        """The report in plain words, one finding per line."""
        lines = []
        top = max(range(self.num_classes), key=lambda c: self.counts[c])
        if self.collapsed:
            lines.append(
                f"mode collapse: {100 * self.histogram[top]:.0f} % of samples are class "
                f"{self._name(top)} ({len(self.classes_hit)} of {self.num_classes} classes hit)"
            )
        if self.never_generated:
            word = "class" if len(self.never_generated) == 1 else "classes"
            lines.append(
                f"mode dropping: {word} {self._names(self.never_generated)} never generated"
            )
        if self.rarely_generated:
            word = "class" if len(self.rarely_generated) == 1 else "classes"
            lines.append(
                f"mode dropping: {word} {self._names(self.rarely_generated)} rarely generated "
                f"(< {100 * self.min_fraction:g} % of samples)"
            )
        if not lines:
            lines.append(
                f"no mode collapse or dropping: {len(self.classes_hit)} of {self.num_classes} "
                f"classes generated, most common class {self._name(top)} at "
                f"{100 * self.histogram[top]:.0f} %"
            )
        lines.append(f"KL(class histogram || uniform) = {self.kl_to_uniform:.4f} nats")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def mode_coverage(
    pred_labels,
    num_classes: int,
    min_fraction: float | None = None,
    collapse_fraction: float = 0.5,
    class_names: tuple[str, ...] | None = None,
) -> ModeReport:
    """ModeReport for predicted class labels (N,) of generated samples (see module doc)."""
    num_classes = positive_int(num_classes, "num_classes", minimum=2)
    labels = torch.as_tensor(pred_labels)
    if labels.dim() != 1 or labels.numel() == 0:
        raise ValueError(f"pred_labels must be a non-empty 1-D tensor, got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"pred_labels must be integer class indices, got {labels.dtype}")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(
            f"pred_labels must be in 0..{num_classes - 1}, got values "
            f"{int(labels.min())}..{int(labels.max())}"
        )
    if min_fraction is None:
        min_fraction = 0.1 / num_classes
    if not 0 <= min_fraction < 1:
        raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction!r}")
    if not 0 < collapse_fraction < 1:
        raise ValueError(f"collapse_fraction must be in (0, 1), got {collapse_fraction!r}")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes")
    n = labels.numel()
    counts = torch.bincount(labels.cpu().long(), minlength=num_classes).tolist()
    histogram = [c / n for c in counts]
    threshold = max(1, math.ceil(min_fraction * n))
    hit = [c for c in range(num_classes) if counts[c] >= threshold]
    dropped = [c for c in range(num_classes) if counts[c] < threshold]
    kl = sum(p * math.log(p * num_classes) for p in histogram if p > 0)
    collapsed = max(histogram) > collapse_fraction or (num_classes >= 5 and len(hit) <= 2)
    return ModeReport(
        num_samples=n,
        num_classes=num_classes,
        counts=counts,
        histogram=histogram,
        classes_hit=hit,
        kl_to_uniform=kl,
        collapsed=collapsed,
        dropped=dropped,
        min_fraction=min_fraction,
        class_names=tuple(class_names) if class_names is not None else None,
    )
