"""Spectral normalisation as a parametrization, a drop-in for
`torch.nn.utils.parametrizations.spectral_norm`: same arguments, same state_dict keys
(`parametrizations.weight.original`, `parametrizations.weight.0._u`, `..._v`), same
numbers; the work runs in gankernels' fused kernels. With order='vu' it follows the
legacy `torch.nn.utils.spectral_norm` hook instead (v updated before u); `gk.patch` uses
that for converted legacy models.

`spectral_norm_once(module)` lets a training step compute sigma once for all of D's
forwards (see its docstring for how that differs from torch)."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..ops.spectral_norm import (
    ORDERS,
    _scale,
    _spectral_norm_into,
    matrix_view,
    sn_power_iteration,
    spectral_norm_scale,
    spectral_norm_sigma,
)
from ..ops.spectral_norm import spectral_norm as sn_op

# Output reuse. glibc serves every CPU allocation of 32 MiB or more with fresh pages from
# the kernel (its mmap threshold stops growing there), and touching them for the first
# time costs several times the whole forward (about 1.5 us per 4 KiB page here). For
# such weights each parametrization keeps up to two output storages and writes W / sigma
# into one that nothing refers to any more (no tensor, view or saved-for-backward copy:
# the storage's use count is 1).
REUSE_BYTES = 32 * 2**20
_POOL_SIZE = 2
_pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_pool_lock = threading.Lock()


def _storage_users(storage: torch.UntypedStorage) -> int:
    return torch._C._storage_Use_Count(storage._cdata)


def _reusable_output(owner: nn.Module, weight: torch.Tensor) -> torch.Tensor | None:
    """A tensor laid out like `weight` on a storage of `owner` that nobody else uses, or
    None (small weights, other devices, non-contiguous ones: allocate as usual)."""
    nbytes = weight.numel() * weight.element_size()
    if nbytes < REUSE_BYTES or weight.device.type != "cpu" or not weight.is_contiguous():
        return None
    with _pool_lock:
        pool = _pools.setdefault(owner, [])
        pool[:] = [st for st in pool if st.nbytes() == nbytes]  # drop stale sizes
        free = next((st for st in pool if _storage_users(st) == 1), None)
        if free is None:
            if len(pool) >= _POOL_SIZE:
                return None
            free = torch.UntypedStorage(nbytes, device=weight.device)
            pool.append(free)
        # A new tensor on the storage: its use count is 2 until this output is dropped.
        out = weight.new_empty(0)
        return out.set_(free, 0, weight.shape, weight.stride())


_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class SpectralNorm(nn.Module):
    """The parametrization W -> W / sigma(W). Buffers `_u`, `_v` as in torch.

    order: 'uv' (torch's parametrization: u = normalize(W v), then v = normalize(W^T u))
    or 'vu' (the legacy torch.nn.utils.spectral_norm hook: v first, then u).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        n_power_iterations: int = 1,
        dim: int = 0,
        eps: float = 1e-12,
        order: str = "uv",
    ) -> None:
        super().__init__()
        ndim = weight.ndim
        if not -ndim <= dim < max(ndim, 1):
            raise IndexError(
                f"spectral_norm: dim must be in [{-ndim}, {ndim - 1}] for a {ndim}-D weight, "
                f"got {dim}"
            )
        if not isinstance(n_power_iterations, int) or n_power_iterations <= 0:
            raise ValueError(
                "spectral_norm: n_power_iterations must be a positive int, got "
                f"{n_power_iterations!r}"
            )
        if not weight.is_floating_point():
            raise TypeError(f"spectral_norm: weight must be floating point, got {weight.dtype}")
        if order not in ORDERS:
            raise ValueError(f"spectral_norm: order must be 'uv' or 'vu', got {order!r}")
        self.dim = dim % ndim if ndim > 0 else 0
        self.eps = eps
        self.n_power_iterations = n_power_iterations
        self.order = order
        if ndim > 1:
            A, H, K = matrix_view(weight.shape, self.dim)
            # Same random draws, in the same order, as torch's parametrization.
            u = weight.new_empty(H).normal_(0, 1)
            v = weight.new_empty(A * K).normal_(0, 1)
            self.register_buffer("_u", F.normalize(u, dim=0, eps=eps))
            self.register_buffer("_v", F.normalize(v, dim=0, eps=eps))
            with torch.no_grad():
                sn_power_iteration(
                    weight.detach(), self._u, self._v, self.dim, 15, eps, order == "vu"
                )

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        eager = not torch.compiler.is_compiling()
        if getattr(self, "_hold_depth", 0):
            if eager and self._held_for != (id(weight), weight._version):
                self._refresh(weight)  # W changed inside the block: its own sigma
            held = (weight, self._held_u, self._held_v, self._held_sigma, self.dim)
            out = _reusable_output(self, weight) if eager else None
            return spectral_norm_scale(*held) if out is None else _scale(*held, out)
        args = (self.n_power_iterations, self.eps, self.dim, self.training, self.order)
        out = _reusable_output(self, weight) if eager else None
        if out is not None:
            return _spectral_norm_into(weight, self._u, self._v, *args, out)
        return sn_op(weight, self._u, self._v, *args)

    # Sigma once for several forwards (spectral_norm_once). While held, a forward is
    # W / sigma with the sigma, u and v of the last refresh: no power iteration, no pass
    # over W besides the division. The held vectors are copies (buffers, so that .to()
    # and torch.compile see them), refreshed in place: a graph built in one block and
    # back-propagated after the next refresh fails loudly (autograd's version check).

    def hold(self, weight: torch.Tensor) -> None:
        """Refresh sigma from `weight` (this parametrization's input) and hold it."""
        depth = getattr(self, "_hold_depth", 0)
        if depth == 0 and weight.ndim > 1:
            self._refresh(weight)
        self._hold_depth = depth + 1

    def release(self) -> None:
        self._hold_depth = max(0, getattr(self, "_hold_depth", 0) - 1)

    @torch.no_grad()
    def _refresh(self, weight: torch.Tensor) -> None:
        # In training mode this is the forward's power iteration (u, v advance once).
        sigma = spectral_norm_sigma(
            weight,
            self._u,
            self._v,
            self.n_power_iterations,
            self.eps,
            self.dim,
            self.training,
            self.order,
        )
        if getattr(self, "_held_sigma", None) is None or self._held_u.shape != self._u.shape:
            self.register_buffer("_held_u", self._u.clone(), persistent=False)
            self.register_buffer("_held_v", self._v.clone(), persistent=False)
            self.register_buffer("_held_sigma", sigma.clone(), persistent=False)
        else:
            self._held_u.copy_(self._u)
            self._held_v.copy_(self._v)
            self._held_sigma.copy_(sigma)
        self._held_for = (id(weight), weight._version)

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        # As in torch: assigning a weight stores it as the new original.
        return value

    def extra_repr(self) -> str:
        order = "" if self.order == "uv" else f", order={self.order!r}"
        return (
            f"dim={self.dim}, n_power_iterations={self.n_power_iterations}, eps={self.eps}" + order
        )


def spectral_norm(
    module: nn.Module,
    name: str = "weight",
    n_power_iterations: int = 1,
    eps: float = 1e-12,
    dim: int | None = None,
    *,
    order: str = "uv",
) -> nn.Module:
    """Apply spectral normalisation to `module.<name>`; returns the module.
    order='vu' updates v before u, as the legacy torch.nn.utils.spectral_norm hook."""
    weight = getattr(module, name, None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(
            f"spectral_norm: module {type(module).__name__} has no parameter or buffer {name!r}"
        )
    if dim is None:
        dim = 1 if isinstance(module, _TRANSPOSED) else 0
    parametrize.register_parametrization(
        module, name, SpectralNorm(weight, n_power_iterations, dim, eps, order)
    )
    return module


def _spectral_norms(module: nn.Module) -> list[tuple[SpectralNorm, torch.Tensor]]:
    """(parametrization, its input) for every gankernels spectral norm inside `module`."""
    from torch.nn.utils.parametrizations import _SpectralNorm as TorchSpectralNorm
    from torch.nn.utils.spectral_norm import SpectralNorm as LegacySpectralNorm

    found = []
    for name, m in module.named_modules():
        if any(isinstance(h, LegacySpectralNorm) for h in m._forward_pre_hooks.values()):
            raise ValueError(
                f"spectral_norm_once: {name or type(m).__name__} uses torch's legacy "
                "spectral_norm hook; convert the model with gankernels.patch(model) first"
            )
        if not parametrize.is_parametrized(m):
            continue
        for tensor_name, plist in m.parametrizations.items():
            for i, p in enumerate(plist):
                where = f"{name + '.' if name else ''}{tensor_name}"
                if isinstance(p, TorchSpectralNorm):
                    raise ValueError(
                        f"spectral_norm_once: {where} uses torch's spectral_norm "
                        "parametrization; convert the model with gankernels.patch(model) first"
                    )
                if isinstance(p, SpectralNorm):
                    if i != 0:
                        raise ValueError(
                            f"spectral_norm_once: the spectral norm of {where} is not the "
                            "first parametrization of the tensor"
                        )
                    found.append((p, plist.original))
    return found


@contextlib.contextmanager
def spectral_norm_once(module: nn.Module) -> Iterator[nn.Module]:
    """Sigma once for the block: every gankernels spectral norm inside `module` runs its
    power iteration once on entry (training mode: u, v advance, as one forward would; eval
    mode: sigma = u.Wv) and every forward in the block then divides W by that sigma.

        with gk.nn.utils.spectral_norm_once(D):   # D's weights do not change in here
            loss = hinge(D(real), D(fake)) + gradient_penalty(D, real, fake)
        loss.backward(); opt_d.step()

    Gradients are those of W / sigma(W) with sigma = u . W v and u, v fixed, exactly as
    in a normal forward, so every forward in the block gives the same normalised weight and
    the same gradient as recomputing it from the held u, v would. How this differs from
    torch's parametrization: torch advances the power iteration at every training-mode
    forward, so a D step with forwards on real, fake and interpolated images runs it three
    times on the same weights (sigma slightly better converged, and slightly different in
    each forward); here it runs once per block. u and v still track the top singular
    vectors across steps, as they do with one D forward per step.

    Cheap: one walk over the modules and one power iteration per layer (the work the first
    forward would do anyway). A weight changed in place inside the block (an optimiser
    step) is noticed through its version counter and gets a fresh sigma, in eager mode;
    under torch.compile the forwards only divide (no check). Blocks nest; the outermost one
    refreshes. Raises for torch's own spectral norms (gk.patch converts them).
    """
    held = _spectral_norms(module)
    done = []
    try:
        for p, weight in held:
            p.hold(weight)
            done.append(p)
        yield module
    finally:
        for p in done:
            p.release()


def _sn_module(base: type[nn.Module], doc: str) -> type[nn.Module]:
    """A subclass of `base` whose weight is spectrally normalised from construction."""

    def __init__(self, *args, n_power_iterations: int = 1, eps: float = 1e-12, **kwargs):
        base.__init__(self, *args, **kwargs)
        spectral_norm(self, "weight", n_power_iterations, eps)

    return type(f"SN{base.__name__}", (base,), {"__init__": __init__, "__doc__": doc})


SNLinear = _sn_module(nn.Linear, "nn.Linear with spectral norm on its weight.")
SNConv2d = _sn_module(nn.Conv2d, "nn.Conv2d with spectral norm on its weight.")
SNConvTranspose2d = _sn_module(
    nn.ConvTranspose2d, "nn.ConvTranspose2d with spectral norm on its weight (dim=1)."
)
SNEmbedding = _sn_module(nn.Embedding, "nn.Embedding with spectral norm on its weight.")

__all__ = [
    "SpectralNorm",
    "spectral_norm",
    "spectral_norm_once",
    "SNLinear",
    "SNConv2d",
    "SNConvTranspose2d",
    "SNEmbedding",
]
