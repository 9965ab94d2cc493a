"""Triton kernels of spectral normalisation.

Layout contract. The weight `w` is contiguous and is viewed as (A, H, K): A is the product
of the dims before the normalised dim, H = shape[dim], K the product of the dims after it.
It stands for the matrix M of shape (H, N), N = A * K, with

    M[h, a*K + k] = w[a*H*K + h*K + k]

so that no transpose or copy of the weight is ever made. `u` is a contiguous (H,) vector
and `v` a contiguous (N,) vector of the weight's dtype and device. Supported dtypes:
float32, float64, float16, bfloat16; sums are accumulated in float32 (float64 for float64
inputs). Flat offsets are 32-bit: the weight must have fewer than 2**31 elements.

power_iteration(w, u, v, A, H, K, n_iter, eps) -> sigma (0-dim, w's dtype)
    n_iter times: u = normalize(M v); v = normalize(M^T u), with
    normalize(x) = x / max(||x||, eps); u and v are updated in place. For n_iter >= 1,
    sigma = s2 / max(sqrt(s2), eps) with s2 = ||M^T u||^2 of the last iteration; for
    n_iter == 0, sigma = u . M v. No host synchronisation.

    Small weights (padded tile of at most 16384 elements): one single-program launch
    keeps W in registers for all iterations. Larger weights, per iteration:
      _sn_mv_kernel    t = M x       grid (row blocks, column splits)
      _sn_mtv_kernel   s = M^T u     grid (column blocks, row splits); writes u
    and one _sn_finalize_kernel writing v and sigma (or _sn_dot_kernel for n_iter == 0).
    Each matvec reads W once. Normalisation factors are applied lazily: x is the
    unnormalised s of the previous iteration, and the programs of the first row block
    of _sn_mv_kernel also write per-split partial sums of ||x||^2, so that no program
    ever re-reads a whole vector to get a norm of it (except the small final kernel).
    When a dimension is split, partial matvecs are combined with atomic adds into
    double-buffered scratch vectors that the kernel before zeroes.

backward(grad, w, u, v, sigma, A, H, K) -> grad_w
    c = sum(grad * w); grad_w = (grad - (c / sigma) * u[h] * v[a*K + k]) / sigma.
    One reduction launch writing per-program partial sums, one elementwise launch reading
    them (one fused single-program launch for small weights); sigma is read on device.
"""

from __future__ import annotations

import inspect

import torch
import triton
import triton.language as tl

from . import cdiv, next_pow2, target_programs

# Largest padded (BLOCK_H * BLOCK_N) tile handled by the single-program power iteration.
_SMALL_TILE = 16384
# Largest weight handled by the single-program backward.
_SMALL_BWD = 16384


# ---------------------------------------------------------------------------------------
# Power iteration: single program, whole weight in registers.


@triton.jit
def _sn_small_kernel(
    w_ptr,
    u_ptr,
    v_ptr,
    sigma_ptr,
    H,
    K,
    N,
    n_iter,
    eps,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_ITER: tl.constexpr,
    ROW_CONTIG: tl.constexpr,
    FP64: tl.constexpr,
):
    rows = tl.arange(0, BLOCK_H)
    cols = tl.arange(0, BLOCK_N)
    row_mask = rows < H
    col_mask = cols < N
    if ROW_CONTIG:
        offs = rows[:, None] * N + cols[None, :]
    else:
        a = cols // K
        offs = rows[:, None] * K + (a * (H * K) + (cols - a * K))[None, :]
    wm = tl.load(w_ptr + offs, mask=row_mask[:, None] & col_mask[None, :], other=0.0)
    vv = tl.load(v_ptr + cols, mask=col_mask, other=0.0)
    if FP64:
        wm = wm.to(tl.float64)
        vv = vv.to(tl.float64)
        uu = tl.zeros([BLOCK_H], dtype=tl.float64)
        s2 = tl.sum(tl.zeros([BLOCK_N], dtype=tl.float64), axis=0)
    else:
        wm = wm.to(tl.float32)
        vv = vv.to(tl.float32)
        uu = tl.zeros([BLOCK_H], dtype=tl.float32)
        s2 = tl.sum(tl.zeros([BLOCK_N], dtype=tl.float32), axis=0)
    if HAS_ITER:
        for _ in range(n_iter):
            t = tl.sum(wm * vv[None, :], axis=1)
            uu = t / tl.maximum(tl.sqrt(tl.sum(t * t, axis=0)), eps)
            s = tl.sum(wm * uu[:, None], axis=0)
            s2 = tl.sum(s * s, axis=0)
            vv = s / tl.maximum(tl.sqrt(s2), eps)
        sigma = s2 / tl.maximum(tl.sqrt(s2), eps)
        tl.store(u_ptr + rows, uu.to(u_ptr.dtype.element_ty), mask=row_mask)
        tl.store(v_ptr + cols, vv.to(v_ptr.dtype.element_ty), mask=col_mask)
    else:
        uu = tl.load(u_ptr + rows, mask=row_mask, other=0.0).to(uu.dtype)
        t = tl.sum(wm * vv[None, :], axis=1)
        sigma = tl.sum(uu * t, axis=0)
    tl.store(sigma_ptr, sigma.to(sigma_ptr.dtype.element_ty))


# ---------------------------------------------------------------------------------------
# Power iteration: multi-program kernels.


@triton.jit
def _sn_mv_kernel(
    w_ptr,
    x_ptr,
    t_ptr,
    xpart_ptr,
    zero_ptr,
    H,
    K,
    N,
    cols_per_split,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    T_ATOMIC: tl.constexpr,
    ZERO: tl.constexpr,
    ROW_CONTIG: tl.constexpr,
):
    """t (+)= M[rows, cols of this split] x[cols]; x unnormalised.

    Programs of row block 0 also write xpart[split] = sum of x^2 over their columns.
    With ZERO, all programs together clear zero_ptr[0:N].
    """
    pid_h = tl.program_id(0)
    pid_c = tl.program_id(1)
    acc_ty = t_ptr.dtype.element_ty
    rows = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    row_mask = rows < H
    offs_n = tl.arange(0, BLOCK_N)
    col_lo = pid_c * cols_per_split
    col_hi = tl.minimum(col_lo + cols_per_split, N)
    acc = tl.zeros([BLOCK_H, BLOCK_N], dtype=acc_ty)
    xsq = tl.zeros([BLOCK_N], dtype=acc_ty)
    for c0 in range(col_lo, col_hi, BLOCK_N):
        cols = c0 + offs_n
        col_mask = cols < col_hi
        xx = tl.load(x_ptr + cols, mask=col_mask, other=0.0).to(acc_ty)
        xsq += xx * xx
        if ROW_CONTIG:
            offs = rows[:, None] * N + cols[None, :]
        else:
            a = cols // K
            offs = rows[:, None] * K + (a * (H * K) + (cols - a * K))[None, :]
        wm = tl.load(w_ptr + offs, mask=row_mask[:, None] & col_mask[None, :], other=0.0)
        acc += wm.to(acc_ty) * xx[None, :]
    t = tl.sum(acc, axis=1)
    if T_ATOMIC:
        tl.atomic_add(t_ptr + rows, t, mask=row_mask)
    else:
        tl.store(t_ptr + rows, t, mask=row_mask)
    if pid_h == 0:
        tl.store(xpart_ptr + pid_c, tl.sum(xsq, axis=0))
    if ZERO:
        pid = pid_h * tl.num_programs(1) + pid_c
        step = tl.num_programs(0) * tl.num_programs(1) * BLOCK_N
        zeros = tl.zeros([BLOCK_N], dtype=zero_ptr.dtype.element_ty)
        for z0 in range(pid * BLOCK_N, N, step):
            tl.store(zero_ptr + z0 + offs_n, zeros, mask=(z0 + offs_n) < N)


@triton.jit
def _sn_mtv_kernel(
    w_ptr,
    t_ptr,
    xpart_ptr,
    n_xpart,
    s_ptr,
    u_ptr,
    zero_ptr,
    H,
    K,
    N,
    rows_per_split,
    eps,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    X_NORMED: tl.constexpr,
    S_ATOMIC: tl.constexpr,
    ZERO: tl.constexpr,
    ROW_CONTIG: tl.constexpr,
):
    """u = normalize(t * alpha); s (+)= M[rows of this split, cols]^T u[rows].

    t is M x with x unnormalised; with X_NORMED, alpha = 1 / max(||x||, eps) (||x||^2 from
    the partial sums in xpart), else alpha = 1. Programs of column block 0 write u.
    With ZERO, all programs together clear zero_ptr[0:H].
    """
    pid_c = tl.program_id(0)
    pid_r = tl.program_id(1)
    acc_ty = s_ptr.dtype.element_ty
    offs_h = tl.arange(0, BLOCK_H)
    offs_n = tl.arange(0, BLOCK_N)
    # ||t||^2: t is short, every program reduces it.
    tsq = tl.zeros([BLOCK_H], dtype=acc_ty)
    for h0 in range(0, H, BLOCK_H):
        tt = tl.load(t_ptr + h0 + offs_h, mask=(h0 + offs_h) < H, other=0.0)
        tsq += tt * tt
    t_norm = tl.sqrt(tl.sum(tsq, axis=0))
    if X_NORMED:
        xsq = tl.zeros([BLOCK_N], dtype=acc_ty)
        for p0 in range(0, n_xpart, BLOCK_N):
            xsq += tl.load(xpart_ptr + p0 + offs_n, mask=(p0 + offs_n) < n_xpart, other=0.0)
        alpha = 1.0 / tl.maximum(tl.sqrt(tl.sum(xsq, axis=0)), eps)
        u_scale = alpha / tl.maximum(t_norm * alpha, eps)
    else:
        u_scale = 1.0 / tl.maximum(t_norm, eps)

    cols = pid_c * BLOCK_N + offs_n
    col_mask = cols < N
    if ROW_CONTIG:
        col_offs = cols
    else:
        a = cols // K
        col_offs = a * (H * K) + (cols - a * K)
    row_lo = pid_r * rows_per_split
    row_hi = tl.minimum(row_lo + rows_per_split, H)
    acc = tl.zeros([BLOCK_H, BLOCK_N], dtype=acc_ty)
    for h0 in range(row_lo, row_hi, BLOCK_H):
        rows = h0 + offs_h
        row_mask = rows < row_hi
        uu = tl.load(t_ptr + rows, mask=row_mask, other=0.0) * u_scale
        if pid_c == 0:
            tl.store(u_ptr + rows, uu.to(u_ptr.dtype.element_ty), mask=row_mask)
        if ROW_CONTIG:
            offs = rows[:, None] * N + col_offs[None, :]
        else:
            offs = rows[:, None] * K + col_offs[None, :]
        wm = tl.load(w_ptr + offs, mask=row_mask[:, None] & col_mask[None, :], other=0.0)
        acc += wm.to(acc_ty) * uu[:, None]
    s = tl.sum(acc, axis=0)
    if S_ATOMIC:
        tl.atomic_add(s_ptr + cols, s, mask=col_mask)
    else:
        tl.store(s_ptr + cols, s, mask=col_mask)
    if ZERO:
        pid = pid_c * tl.num_programs(1) + pid_r
        step = tl.num_programs(0) * tl.num_programs(1) * BLOCK_H
        zeros = tl.zeros([BLOCK_H], dtype=zero_ptr.dtype.element_ty)
        for z0 in range(pid * BLOCK_H, H, step):
            tl.store(zero_ptr + z0 + offs_h, zeros, mask=(z0 + offs_h) < H)


@triton.jit
def _sn_finalize_kernel(s_ptr, v_ptr, sigma_ptr, N, eps, BLOCK: tl.constexpr):
    """v = normalize(s); sigma = ||s||^2 / max(||s||, eps). Every program reduces s."""
    pid = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    ssq = tl.zeros([BLOCK], dtype=s_ptr.dtype.element_ty)
    for i0 in range(0, N, BLOCK):
        ss = tl.load(s_ptr + i0 + offs, mask=(i0 + offs) < N, other=0.0)
        ssq += ss * ss
    s2 = tl.sum(ssq, axis=0)
    den = tl.maximum(tl.sqrt(s2), eps)
    idx = pid * BLOCK + offs
    ss = tl.load(s_ptr + idx, mask=idx < N, other=0.0)
    tl.store(v_ptr + idx, (ss / den).to(v_ptr.dtype.element_ty), mask=idx < N)
    if pid == 0:
        tl.store(sigma_ptr, (s2 / den).to(sigma_ptr.dtype.element_ty))


@triton.jit
def _sn_dot_kernel(u_ptr, t_ptr, sigma_ptr, H, BLOCK: tl.constexpr):
    """sigma = u . t (single program)."""
    acc_ty = t_ptr.dtype.element_ty
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=acc_ty)
    for h0 in range(0, H, BLOCK):
        mask = (h0 + offs) < H
        uu = tl.load(u_ptr + h0 + offs, mask=mask, other=0.0).to(acc_ty)
        tt = tl.load(t_ptr + h0 + offs, mask=mask, other=0.0)
        acc += uu * tt
    tl.store(sigma_ptr, tl.sum(acc, axis=0).to(sigma_ptr.dtype.element_ty))


# ---------------------------------------------------------------------------------------
# Backward.


@triton.jit
def _sn_bwd_small_kernel(
    g_ptr,
    w_ptr,
    u_ptr,
    v_ptr,
    sigma_ptr,
    out_ptr,
    numel,
    H,
    K,
    BLOCK: tl.constexpr,
    FP64: tl.constexpr,
):
    """Single program: c = sum(g * w), then the elementwise pass."""
    offs = tl.arange(0, BLOCK)
    if FP64:
        acc = tl.zeros([BLOCK], dtype=tl.float64)
    else:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
    for i0 in range(0, numel, BLOCK):
        mask = (i0 + offs) < numel
        gg = tl.load(g_ptr + i0 + offs, mask=mask, other=0.0).to(acc.dtype)
        ww = tl.load(w_ptr + i0 + offs, mask=mask, other=0.0).to(acc.dtype)
        acc += gg * ww
    c = tl.sum(acc, axis=0)
    sigma = tl.load(sigma_ptr).to(acc.dtype)
    coef = c / sigma
    hk = H * K
    for i0 in range(0, numel, BLOCK):
        idx = i0 + offs
        mask = idx < numel
        a = idx // hk
        rem = idx - a * hk
        h = rem // K
        k = rem - h * K
        gg = tl.load(g_ptr + idx, mask=mask, other=0.0).to(acc.dtype)
        uu = tl.load(u_ptr + h, mask=mask, other=0.0).to(acc.dtype)
        vv = tl.load(v_ptr + a * K + k, mask=mask, other=0.0).to(acc.dtype)
        res = (gg - coef * uu * vv) / sigma
        tl.store(out_ptr + idx, res.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _sn_bwd_partial_kernel(g_ptr, w_ptr, part_ptr, numel, chunk, BLOCK: tl.constexpr):
    """part[pid] = sum(g * w) over elements [pid * chunk, (pid + 1) * chunk)."""
    pid = tl.program_id(0)
    acc_ty = part_ptr.dtype.element_ty
    offs = tl.arange(0, BLOCK)
    lo = pid * chunk
    hi = tl.minimum(lo + chunk, numel)
    acc = tl.zeros([BLOCK], dtype=acc_ty)
    for i0 in range(lo, hi, BLOCK):
        mask = (i0 + offs) < hi
        gg = tl.load(g_ptr + i0 + offs, mask=mask, other=0.0).to(acc_ty)
        ww = tl.load(w_ptr + i0 + offs, mask=mask, other=0.0).to(acc_ty)
        acc += gg * ww
    tl.store(part_ptr + pid, tl.sum(acc, axis=0))


@triton.jit
def _sn_bwd_apply_kernel(
    g_ptr,
    u_ptr,
    v_ptr,
    sigma_ptr,
    part_ptr,
    n_part,
    out_ptr,
    numel,
    H,
    K,
    BLOCK: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """out = (g - (c / sigma) * u[h] * v[a*K + k]) / sigma, c = sum(part)."""
    pid = tl.program_id(0)
    acc_ty = part_ptr.dtype.element_ty
    offs_p = tl.arange(0, BLOCK_P)
    c = tl.sum(tl.load(part_ptr + offs_p, mask=offs_p < n_part, other=0.0), axis=0)
    sigma = tl.load(sigma_ptr).to(acc_ty)
    coef = c / sigma
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    mask = idx < numel
    hk = H * K
    a = idx // hk
    rem = idx - a * hk
    h = rem // K
    k = rem - h * K
    gg = tl.load(g_ptr + idx, mask=mask, other=0.0).to(acc_ty)
    uu = tl.load(u_ptr + h, mask=mask, other=0.0).to(acc_ty)
    vv = tl.load(v_ptr + a * K + k, mask=mask, other=0.0).to(acc_ty)
    res = (gg - coef * uu * vv) / sigma
    tl.store(out_ptr + idx, res.to(out_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------------------
# Launchers.


def _device_ctx(t: torch.Tensor):
    if t.is_cuda:
        return torch.cuda.device(t.device)
    return _NullCtx()


class _NullCtx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check_inputs(w, u, v, A, H, K):
    if w.dtype not in _DTYPES:
        raise TypeError(f"spectral_norm: unsupported dtype {w.dtype}")
    if not w.is_contiguous() or w.numel() != A * H * K:
        raise ValueError("spectral_norm: weight must be contiguous with A*H*K elements")
    if w.numel() >= 2**31:
        raise ValueError("spectral_norm: weight too large for 32-bit offsets")
    for name, x, n in (("u", u, H), ("v", v, A * K)):
        if x.dtype != w.dtype or x.device != w.device:
            raise TypeError(f"spectral_norm: {name} must have the weight's dtype and device")
        if not x.is_contiguous() or x.numel() != n:
            raise ValueError(f"spectral_norm: {name} must be contiguous with {n} elements")


def _use_small(H: int, N: int) -> bool:
    return next_pow2(H) * next_pow2(N) <= _SMALL_TILE


def _split(tiles_other: int, tiles_own: int, target: int) -> tuple[int, int]:
    """(splits, tiles per split) of `tiles_own` so that tiles_other * splits ~ target."""
    want = max(1, min(tiles_own, cdiv(target, tiles_other)))
    per = cdiv(tiles_own, want)
    return cdiv(tiles_own, per), per


def power_iteration(
    w: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    A: int,
    H: int,
    K: int,
    n_iter: int,
    eps: float,
) -> torch.Tensor:
    """Power iteration on M (see the module docstring); updates u, v in place."""
    return _power_iteration(w, u, v, A, H, K, n_iter, eps)


def _power_iteration(
    w, u, v, A, H, K, n_iter, eps, *, small=None, target=None, block_h=None, block_n=None
):
    """power_iteration with optional overrides of the launch plan (used by tests)."""
    A, H, K, n_iter, eps = int(A), int(H), int(K), int(n_iter), float(eps)
    _check_inputs(w, u, v, A, H, K)
    if n_iter < 0:
        raise ValueError("spectral_norm: n_iter must be >= 0")
    N = A * K
    row_contig = A == 1
    sigma = torch.empty((), dtype=w.dtype, device=w.device)
    if small is None:
        small = _use_small(H, N)
    with _device_ctx(w):
        if small:
            bh, bn = next_pow2(H), next_pow2(N)
            _sn_small_kernel[(1,)](
                w, u, v, sigma, H, K, N, n_iter, eps,
                BLOCK_H=bh, BLOCK_N=bn, HAS_ITER=n_iter > 0, ROW_CONTIG=row_contig,
                FP64=w.dtype == torch.float64,
                num_warps=max(4, min(16, bh * bn // 1024)),
            )  # fmt: skip
            return sigma
        _power_iteration_multi(
            w, u, v, sigma, H, K, N, n_iter, eps, row_contig, target, block_h, block_n
        )
    return sigma


def _power_iteration_multi(
    w, u, v, sigma, H, K, N, n_iter, eps, row_contig, target, block_h, block_n
):
    if target is None:
        target = target_programs(w.device, 4)
        target = max(1, min(target, H * N // 8192))
    # t = M x: tiles of (bh_t, bn_t), programs over row blocks and column splits.
    bh_t = block_h or min(32, next_pow2(H))
    bn_t = block_n or min(max(128, 4096 // bh_t), max(16, next_pow2(N)))
    row_blocks = cdiv(H, bh_t)
    csplit, col_tiles_per = _split(row_blocks, cdiv(N, bn_t), target)
    # s = M^T u: tiles of (bh_s, bn_s), programs over column blocks and row splits.
    bn_s = block_n or min(128, next_pow2(N))
    bh_s = block_h or min(max(32, 4096 // bn_s), max(16, next_pow2(H)))
    col_blocks = cdiv(N, bn_s)
    rsplit, row_tiles_per = _split(col_blocks, cdiv(H, bh_s), target)
    t_atomic, s_atomic = csplit > 1, rsplit > 1

    acc = _acc_dtype(w.dtype)
    alloc = torch.zeros if t_atomic else torch.empty
    scratch = alloc(2 * H + 2 * N + csplit, dtype=acc, device=w.device)
    tbuf = (scratch[:H], scratch[H : 2 * H])
    sbuf = (scratch[2 * H : 2 * H + N], scratch[2 * H + N : 2 * H + 2 * N])
    xpart = scratch[2 * H + 2 * N :]

    def mv(x, i):
        _sn_mv_kernel[(row_blocks, csplit)](
            w, x, tbuf[i % 2], xpart, sbuf[i % 2], H, K, N, col_tiles_per * bn_t,
            BLOCK_H=bh_t, BLOCK_N=bn_t, T_ATOMIC=t_atomic, ZERO=s_atomic and n_iter > 0,
            ROW_CONTIG=row_contig, num_warps=4,
        )  # fmt: skip

    if n_iter == 0:
        mv(v, 0)
        _sn_dot_kernel[(1,)](u, tbuf[0], sigma, H, BLOCK=min(1024, next_pow2(H)), num_warps=4)
        return
    for i in range(n_iter):
        mv(v if i == 0 else sbuf[(i - 1) % 2], i)
        _sn_mtv_kernel[(col_blocks, rsplit)](
            w, tbuf[i % 2], xpart, csplit, sbuf[i % 2], u, tbuf[(i + 1) % 2],
            H, K, N, row_tiles_per * bh_s, eps,
            BLOCK_H=bh_s, BLOCK_N=bn_s, X_NORMED=i > 0, S_ATOMIC=s_atomic,
            ZERO=t_atomic and i + 1 < n_iter, ROW_CONTIG=row_contig, num_warps=4,
        )  # fmt: skip
    block = min(1024, next_pow2(N))
    _sn_finalize_kernel[(cdiv(N, block),)](
        sbuf[(n_iter - 1) % 2], v, sigma, N, eps, BLOCK=block, num_warps=4
    )


def backward(
    grad: torch.Tensor,
    w: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    sigma: torch.Tensor,
    A: int,
    H: int,
    K: int,
) -> torch.Tensor:
    """grad_w = (grad - (sum(grad * w) / sigma) * u v^T) / sigma, laid out like w."""
    return _backward(grad, w, u, v, sigma, A, H, K)


def _backward(grad, w, u, v, sigma, A, H, K, *, small=None, target=None):
    """backward with optional overrides of the launch plan (used by tests)."""
    A, H, K = int(A), int(H), int(K)
    _check_inputs(w, u, v, A, H, K)
    if grad.shape != w.shape or grad.dtype != w.dtype or grad.device != w.device:
        raise ValueError("spectral_norm: grad must match the weight's shape, dtype, device")
    if sigma.numel() != 1 or sigma.device != w.device:
        raise ValueError("spectral_norm: sigma must be a one-element tensor on w's device")
    grad = grad.contiguous()
    numel = w.numel()
    out = torch.empty_like(w)
    if numel == 0:
        return out
    if small is None:
        small = numel <= _SMALL_BWD
    with _device_ctx(w):
        if small:
            block = min(2048, next_pow2(numel))
            _sn_bwd_small_kernel[(1,)](
                grad, w, u, v, sigma, out, numel, H, K,
                BLOCK=block, FP64=w.dtype == torch.float64,
                num_warps=max(1, min(8, block // 256)),
            )  # fmt: skip
            return out
        block = 1024
        if target is None:
            target = target_programs(w.device, 4)
        n_part = max(1, min(1024, target, cdiv(numel, 8 * block)))
        chunk = cdiv(cdiv(numel, n_part), block) * block
        n_part = cdiv(numel, chunk)
        part = torch.empty(n_part, dtype=_acc_dtype(w.dtype), device=w.device)
        _sn_bwd_partial_kernel[(n_part,)](grad, w, part, numel, chunk, BLOCK=block, num_warps=4)
        _sn_bwd_apply_kernel[(cdiv(numel, block),)](
            grad, u, v, sigma, part, n_part, out, numel, H, K,
            BLOCK=block, BLOCK_P=max(16, next_pow2(n_part)), num_warps=4,
        )  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------
# Ahead-of-time compile specs: (kernel, signature, constexprs) for every kernel above.


_ACC_PTRS = ("t_ptr", "xpart_ptr", "zero_ptr", "s_ptr", "part_ptr")


def _aot_spec(kernel, dtype, constexprs, **types):
    """(kernel, signature, constexprs): pointers of `dtype` (scratch pointers of its
    accumulation type), `eps` fp32, other runtime arguments i32; `types` overrides."""
    acc = "fp64" if dtype == "fp64" else "fp32"
    signature = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in types:
            signature[name] = types[name]
        elif name.endswith("_ptr"):
            signature[name] = "*" + (acc if name in _ACC_PTRS else dtype)
        else:
            signature[name] = "fp32" if name == "eps" else "i32"
    return kernel, signature, dict(constexprs)


def _aot_specs():
    specs = []
    # Both settings of the boolean flags in fp32, one of them in bf16 and fp64.
    for dt, flags in (("fp32", (True, False)), ("bf16", (False,)), ("fp64", (True,))):
        fp64 = dt == "fp64"
        acc_ptr = "*fp64" if fp64 else "*fp32"
        for flag in flags:
            specs += [
                _aot_spec(
                    _sn_small_kernel,
                    dt,
                    dict(BLOCK_H=64, BLOCK_N=128, HAS_ITER=flag, ROW_CONTIG=flag, FP64=fp64),
                ),
                _aot_spec(
                    _sn_mv_kernel,
                    dt,
                    dict(BLOCK_H=32, BLOCK_N=128, T_ATOMIC=flag, ZERO=not flag, ROW_CONTIG=flag),
                    x_ptr="*" + dt if flag else acc_ptr,
                ),
                _aot_spec(
                    _sn_mtv_kernel,
                    dt,
                    dict(
                        BLOCK_H=32,
                        BLOCK_N=128,
                        X_NORMED=flag,
                        S_ATOMIC=not flag,
                        ZERO=flag,
                        ROW_CONTIG=flag,
                    ),
                ),
            ]
        specs += [
            _aot_spec(_sn_finalize_kernel, dt, dict(BLOCK=1024)),
            _aot_spec(_sn_dot_kernel, dt, dict(BLOCK=1024)),
            _aot_spec(_sn_bwd_small_kernel, dt, dict(BLOCK=2048, FP64=fp64)),
            _aot_spec(_sn_bwd_partial_kernel, dt, dict(BLOCK=1024)),
            _aot_spec(_sn_bwd_apply_kernel, dt, dict(BLOCK=1024, BLOCK_P=256)),
        ]
    return specs


AOT_SPECS = _aot_specs()
