"""Drop-in modules: same signatures, state_dict keys and numbers as the torch modules."""

from . import utils
from .bias_act import BiasAct, FusedLeakyReLU
from .conv_block import ConvBlock, EqualizedWeight
from .norm_act import NormAct
from .spectral_norm import SNConv2d, SNConvTranspose2d, SNEmbedding, SNLinear

__all__ = [
    "utils",
    "BiasAct",
    "FusedLeakyReLU",
    "ConvBlock",
    "EqualizedWeight",
    "NormAct",
    "SNConv2d",
    "SNConvTranspose2d",
    "SNLinear",
    "SNEmbedding",
]
