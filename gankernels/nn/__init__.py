"""Drop-in modules: same signatures, state_dict keys and numbers as the torch modules."""

from . import utils
from .bias_act import BiasAct, FusedLeakyReLU
from .minibatch_stddev import MinibatchStdDev
from .modulated_conv import ModulatedConv2d
from .spectral_norm import SNConv2d, SNConvTranspose2d, SNEmbedding, SNLinear
from .upfirdn2d import Downsample2d, Upsample2d

__all__ = [
    "utils",
    "BiasAct",
    "FusedLeakyReLU",
    "MinibatchStdDev",
    "ModulatedConv2d",
    "SNConv2d",
    "SNConvTranspose2d",
    "SNLinear",
    "SNEmbedding",
    "Upsample2d",
    "Downsample2d",
]
