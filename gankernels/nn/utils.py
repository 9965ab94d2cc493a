"""`gk.nn.utils`: mirrors `torch.nn.utils` for the functions gankernels replaces."""

from .spectral_norm import SpectralNorm, spectral_norm, spectral_norm_once

__all__ = ["SpectralNorm", "spectral_norm", "spectral_norm_once"]
