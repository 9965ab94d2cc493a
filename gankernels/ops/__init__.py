"""Functional ops. Each module holds the op's plain-torch reference, its torch.library
registration and the dispatch to the selected backend."""

from .bias_act import bias_act
from .norm_act import norm_act
from .penalty import gradient_penalty, interpolate, r1_penalty
from .spectral_norm import spectral_norm

__all__ = ["bias_act", "norm_act", "gradient_penalty", "interpolate", "r1_penalty", "spectral_norm"]
