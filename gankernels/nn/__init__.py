"""Drop-in modules: same signatures, state_dict keys and numbers as the torch modules."""

from . import utils
from .spectral_norm import SNConv2d, SNConvTranspose2d, SNEmbedding, SNLinear

__all__ = ["utils", "SNConv2d", "SNConvTranspose2d", "SNLinear", "SNEmbedding"]
