"""Functional ops. Each module holds the op's plain-torch reference, its torch.library
registration and the dispatch to the selected backend."""

from .spectral_norm import spectral_norm

__all__ = ["spectral_norm"]
