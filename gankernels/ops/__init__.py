"""Functional ops. Each module holds the op's plain-torch reference, its torch.library
registration and the dispatch to the selected backend."""

from .bias_act import bias_act
from .minibatch_stddev import minibatch_stddev
from .modulated_conv2d import modulated_conv2d
from .penalty import gradient_penalty, interpolate, r1_penalty
from .spectral_norm import spectral_norm

__all__ = [
    "bias_act",
    "minibatch_stddev",
    "modulated_conv2d",
    "gradient_penalty",
    "interpolate",
    "r1_penalty",
    "spectral_norm",
]
