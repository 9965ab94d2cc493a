"""Drop-in modules: same signatures, state_dict keys and numbers as the torch modules."""

from . import utils
from .bias_act import BiasAct, FusedLeakyReLU
from .conv_block import ConvBlock, EqualizedWeight
from .layer_act import (
    Conv1dAct,
    Conv2dAct,
    Conv2dAvgPoolAct,
    Conv3dAct,
    ConvTranspose1dAct,
    ConvTranspose2dAct,
    ConvTranspose3dAct,
    LinearAct,
    UpsampleConv2dAct,
)
from .minibatch_stddev import MinibatchStdDev
from .modulated_conv import ModulatedConv2d
from .norm_act import NormAct
from .spectral_norm import SNConv2d, SNConvTranspose2d, SNEmbedding, SNLinear
from .upfirdn2d import Downsample2d, Upsample2d

__all__ = [
    "utils",
    "BiasAct",
    "FusedLeakyReLU",
    "ConvBlock",
    "EqualizedWeight",
    "Conv1dAct",
    "Conv2dAct",
    "Conv3dAct",
    "ConvTranspose1dAct",
    "ConvTranspose2dAct",
    "ConvTranspose3dAct",
    "LinearAct",
    "UpsampleConv2dAct",
    "Conv2dAvgPoolAct",
    "NormAct",
    "MinibatchStdDev",
    "ModulatedConv2d",
    "SNConv2d",
    "SNConvTranspose2d",
    "SNLinear",
    "SNEmbedding",
    "Upsample2d",
    "Downsample2d",
]
