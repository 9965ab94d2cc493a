"""Functional ops. Each module holds the op's plain-torch reference, its torch.library
registration and the dispatch to the selected backend."""

from .bias_act import bias_act
from .minibatch_stddev import minibatch_stddev
from .modulated_conv2d import modulated_conv2d
from .norm_act import norm_act
from .penalty import gradient_penalty, interpolate, r1_penalty
from .resample_conv import conv2d_avgpool, upsample_conv2d
from .spectral_norm import spectral_norm, spectral_norm_scale, spectral_norm_sigma
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "bias_act",
    "norm_act",
    "minibatch_stddev",
    "modulated_conv2d",
    "gradient_penalty",
    "interpolate",
    "r1_penalty",
    "spectral_norm",
    "spectral_norm_sigma",
    "spectral_norm_scale",
    "upfirdn2d",
    "setup_filter",
    "upsample2d",
    "downsample2d",
    "filter2d",
    "upsample_conv2d",
    "conv2d_avgpool",
]
