"""gankernels: fused Triton and C++/CUDA kernels for GAN training.

import gankernels as gk
gk.backends()                       # which backends this machine has
gk.nn.utils.spectral_norm(conv)     # drop-in for torch's parametrization
gk.patch(model)                     # swap torch layers for fused ones, in place
gk.set_fusion("auto")               # fused kernel or plain torch per layer, by measurement
gk.metrics.compute(G, real_images)  # FID, KID, IS, precision/recall, mode coverage
"""

from . import losses, metrics, models, nn, ops
from ._backend import backends, get_backend, set_backend, use_backend
from .fusion import fusion_report, get_fusion, second_order, set_fusion, use_fusion
from .patch import PatchReport, patch
from .regularizers import (
    CriticLoss,
    gradient_penalty,
    lazy_due,
    r1_penalty,
    r1_penalty_from,
    wgan_gp_critic_loss,
)

__version__ = "0.1.0"

__all__ = [
    "backends",
    "get_backend",
    "set_backend",
    "use_backend",
    "set_fusion",
    "get_fusion",
    "use_fusion",
    "second_order",
    "fusion_report",
    "nn",
    "losses",
    "metrics",
    "models",
    "ops",
    "patch",
    "PatchReport",
    "gradient_penalty",
    "r1_penalty",
    "r1_penalty_from",
    "lazy_due",
    "wgan_gp_critic_loss",
    "CriticLoss",
]
