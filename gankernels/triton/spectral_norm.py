"""Triton kernels of spectral normalisation.

Layout contract. The weight `w` is contiguous and is viewed as (A, H, K): A is the product
of the dims before the normalised dim, H = shape[dim], K the product of the dims after it.
It stands for the matrix M of shape (H, N), N = A * K, with

    M[h, a*K + k] = w[a*H*K + h*K + k]

so that no transpose or copy of the weight is ever made. `u` is a contiguous (H,) vector
and `v` a contiguous (N,) vector of the weight's dtype and device. Supported dtypes:
float32, float64, float16, bfloat16; sums are accumulated in float32 (float64 for float64
inputs). Flat offsets are 32-bit: the weight must have fewer than 2**31 elements.

power_iteration(w, u, v, A, H, K, n_iter, eps, v_first=False) -> sigma (0-dim, w's dtype)
    n_iter times: u = normalize(M v); v = normalize(M^T u) (v_first: v = normalize(M^T u);
    u = normalize(M v), the legacy hook's order), with normalize(x) = x / max(||x||, eps);
    u and v are updated in place and sigma = u . M v with the new u, v. No host
    synchronisation, no float atomics: every sum has a fixed order.

    Small weights (padded tile of at most 16384 elements): one single-program launch
    keeps W in registers for all iterations. Larger weights: ONE pass over W per
    iteration. Call the rows of M "lines" (order u, v) or its columns (v_first, i.e. the
    rows of M^T). Each program of _sn_fused_kernel owns a range of lines; for each block
    of lines it forms the dot products f = line . x, then reads the same block again
    (from cache) and adds f[l] * line into the program's partial vector. After the pass
    f = M x and the partials sum to M^T M x (rows; M M^T x for columns), so
      u = normalize(M v) = f / D with D = max(|f|, eps),
      v = normalize(M^T u) = s / max(|s|, eps * D), s = sum of the partials,
      sigma = u . M v_new = |s|^2 / (D * max(|s|, eps * D)),
    torch's iteration exactly (v_first: the same with the roles of u and v swapped).
      _sn_fused_kernel     grid (programs,): f, |f|^2 per program, partials
      _sn_combine_kernel   grid (blocks,): s = partials added in program order, |s|^2
                           per block
      _sn_finalize_kernel  grid (blocks,): u, v and sigma from f, s and the partial norms
    The next iteration's fused kernel scales its input s by 1 / max(|s|, eps * D) as it
    loads it, from the partial norms, so no pass ever normalises a vector on its own.
    Eval (n_iter == 0): the fused kernel's first half (f = M v) and _sn_dot_kernel.

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
# Elements per program of the combine and finalize kernels.
_VEC_BLOCK = 1024
# Partial norms are summed in blocks of this many.
_PART_BLOCK = 128


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
    V_FIRST: tl.constexpr,
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
    uu = tl.load(u_ptr + rows, mask=row_mask, other=0.0)
    if FP64:
        wm = wm.to(tl.float64)
        vv = vv.to(tl.float64)
        uu = uu.to(tl.float64)
        s2 = tl.sum(tl.zeros([BLOCK_N], dtype=tl.float64), axis=0)
    else:
        wm = wm.to(tl.float32)
        vv = vv.to(tl.float32)
        uu = uu.to(tl.float32)
        s2 = tl.sum(tl.zeros([BLOCK_N], dtype=tl.float32), axis=0)
    if HAS_ITER:
        for _ in range(n_iter):
            if V_FIRST:
                s = tl.sum(wm * uu[:, None], axis=0)
                vv = s / tl.maximum(tl.sqrt(tl.sum(s * s, axis=0)), eps)
                t = tl.sum(wm * vv[None, :], axis=1)
                s2 = tl.sum(t * t, axis=0)
                uu = t / tl.maximum(tl.sqrt(s2), eps)
            else:
                t = tl.sum(wm * vv[None, :], axis=1)
                uu = t / tl.maximum(tl.sqrt(tl.sum(t * t, axis=0)), eps)
                s = tl.sum(wm * uu[:, None], axis=0)
                s2 = tl.sum(s * s, axis=0)
                vv = s / tl.maximum(tl.sqrt(s2), eps)
        # sigma = u . M v = |last product|^2 / max(|last product|, eps)
        sigma = s2 / tl.maximum(tl.sqrt(s2), eps)
        tl.store(u_ptr + rows, uu.to(u_ptr.dtype.element_ty), mask=row_mask)
        tl.store(v_ptr + cols, vv.to(v_ptr.dtype.element_ty), mask=col_mask)
    else:
        t = tl.sum(wm * vv[None, :], axis=1)
        sigma = tl.sum(uu * t, axis=0)
    tl.store(sigma_ptr, sigma.to(sigma_ptr.dtype.element_ty))


# ---------------------------------------------------------------------------------------
# Power iteration: one pass over W per iteration, multi-program.


@triton.jit
def _sum_parts(ptr, n, BLOCK: tl.constexpr):
    """sum(ptr[0:n]) in a fixed order (every program gets the same bits)."""
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=ptr.dtype.element_ty)
    for p0 in range(0, n, BLOCK):
        acc += tl.load(ptr + p0 + offs, mask=(p0 + offs) < n, other=0.0)
    return tl.sum(acc, axis=0)


@triton.jit
def _line_offsets(lines, idx, H, K, N, TRANSPOSED: tl.constexpr, ROW_CONTIG: tl.constexpr):
    """Offsets in w of the tile (lines x idx): M[lines, idx], or M[idx, lines] transposed."""
    if TRANSPOSED:
        h = idx[None, :]
        j = lines[:, None]
    else:
        h = lines[:, None]
        j = idx[None, :]
    if ROW_CONTIG:
        offs = h * N + j
    else:
        a = j // K
        offs = a * (H * K) + h * K + (j - a * K)
    return offs


@triton.jit
def _sn_fused_kernel(
    w_ptr,
    x_ptr,
    f_ptr,
    fsq_ptr,
    part_ptr,
    prev_fsq_ptr,
    n_prev_fsq,
    prev_ssq_ptr,
    n_prev_ssq,
    H,
    K,
    N,
    n_lines,
    line_len,
    lines_per_prog,
    eps,
    BLOCK_L: tl.constexpr,
    BLOCK_I: tl.constexpr,
    TRANSPOSED: tl.constexpr,
    ROW_CONTIG: tl.constexpr,
    HAS_PREV: tl.constexpr,
    PHASE2: tl.constexpr,
):
    """For the program's lines l (rows of M; of M^T when TRANSPOSED), in blocks of BLOCK_L:
    f[l] = line_l . x * alpha, then (PHASE2) part[pid, :] = sum_l f[l] * line_l, reading
    each block a second time while it is still in cache. fsq[pid] = sum of f[l]^2.

    alpha = 1, or with HAS_PREV (x is the previous iteration's unnormalised s)
    1 / max(|s|, eps * max(|f_prev|, eps)) from the previous partial norms.
    """
    pid = tl.program_id(0)
    acc_ty = f_ptr.dtype.element_ty
    if HAS_PREV:
        d_prev = tl.maximum(tl.sqrt(_sum_parts(prev_fsq_ptr, n_prev_fsq, 128)), eps)
        alpha = 1.0 / tl.maximum(tl.sqrt(_sum_parts(prev_ssq_ptr, n_prev_ssq, 128)), eps * d_prev)
    else:
        alpha = 1.0
    offs_l = tl.arange(0, BLOCK_L)
    offs_i = tl.arange(0, BLOCK_I)
    lo = pid * lines_per_prog
    hi = tl.minimum(lo + lines_per_prog, n_lines)
    fsq = tl.zeros([BLOCK_L], dtype=acc_ty)
    for l0 in range(lo, hi, BLOCK_L):
        lines = l0 + offs_l
        line_mask = lines < hi
        acc = tl.zeros([BLOCK_L, BLOCK_I], dtype=acc_ty)
        for i0 in range(0, line_len, BLOCK_I):
            idx = i0 + offs_i
            idx_mask = idx < line_len
            xx = tl.load(x_ptr + idx, mask=idx_mask, other=0.0).to(acc_ty)
            offs = _line_offsets(lines, idx, H, K, N, TRANSPOSED, ROW_CONTIG)
            wm = tl.load(w_ptr + offs, mask=line_mask[:, None] & idx_mask[None, :], other=0.0)
            acc += wm.to(acc_ty) * xx[None, :]
        f = tl.sum(acc, axis=1) * alpha
        tl.store(f_ptr + lines, f, mask=line_mask)
        fsq += f * f
        if PHASE2:
            not_first = (offs_i * 0 + l0) > lo  # the first block starts the partial
            for i0 in range(0, line_len, BLOCK_I):
                idx = i0 + offs_i
                idx_mask = idx < line_len
                offs = _line_offsets(lines, idx, H, K, N, TRANSPOSED, ROW_CONTIG)
                wm = tl.load(w_ptr + offs, mask=line_mask[:, None] & idx_mask[None, :], other=0.0)
                contrib = tl.sum(wm.to(acc_ty) * f[:, None], axis=0)
                pp = part_ptr + pid * line_len + idx
                prev = tl.load(pp, mask=idx_mask & not_first, other=0.0)
                tl.store(pp, prev + contrib, mask=idx_mask)
            # The next block reads back what this one stored.
            tl.debug_barrier()
    tl.store(fsq_ptr + pid, tl.sum(fsq, axis=0))


@triton.jit
def _sn_combine_kernel(part_ptr, n_part, s_ptr, ssq_ptr, L, BLOCK: tl.constexpr):
    """s = sum over p of part[p, :] in program order; ssq[pid] = sum of s^2 in the block."""
    pid = tl.program_id(0)
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    mask = idx < L
    acc = tl.zeros([BLOCK], dtype=s_ptr.dtype.element_ty)
    for p in range(0, n_part):
        acc += tl.load(part_ptr + p * L + idx, mask=mask, other=0.0)
    tl.store(s_ptr + idx, acc, mask=mask)
    tl.store(ssq_ptr + pid, tl.sum(acc * acc, axis=0))


@triton.jit
def _sn_finalize_kernel(
    f_ptr,
    n_f,
    fsq_ptr,
    n_fsq,
    s_ptr,
    n_s,
    ssq_ptr,
    n_ssq,
    out_f_ptr,
    out_s_ptr,
    sigma_ptr,
    eps,
    BLOCK: tl.constexpr,
):
    """out_f = f / D, out_s = s / max(|s|, eps * D), D = max(|f|, eps);
    sigma = |s|^2 / (D * max(|s|, eps * D))."""
    pid = tl.program_id(0)
    d = tl.maximum(tl.sqrt(_sum_parts(fsq_ptr, n_fsq, 128)), eps)
    s2 = _sum_parts(ssq_ptr, n_ssq, 128)
    ds = tl.maximum(tl.sqrt(s2), eps * d)
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    ff = tl.load(f_ptr + idx, mask=idx < n_f, other=0.0)
    tl.store(out_f_ptr + idx, (ff / d).to(out_f_ptr.dtype.element_ty), mask=idx < n_f)
    ss = tl.load(s_ptr + idx, mask=idx < n_s, other=0.0)
    tl.store(out_s_ptr + idx, (ss / ds).to(out_s_ptr.dtype.element_ty), mask=idx < n_s)
    if pid == 0:
        tl.store(sigma_ptr, (s2 / (d * ds)).to(sigma_ptr.dtype.element_ty))


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


def power_iteration(
    w: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    A: int,
    H: int,
    K: int,
    n_iter: int,
    eps: float,
    v_first: bool = False,
) -> torch.Tensor:
    """Power iteration on M (see the module docstring); updates u, v in place."""
    return _power_iteration(w, u, v, A, H, K, n_iter, eps, v_first)


def _power_iteration(
    w, u, v, A, H, K, n_iter, eps, v_first=False, *, small=None, target=None, block_l=None,
    block_i=None,
):  # fmt: skip
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
                BLOCK_H=bh, BLOCK_N=bn, HAS_ITER=n_iter > 0, V_FIRST=bool(v_first),
                ROW_CONTIG=row_contig, FP64=w.dtype == torch.float64,
                num_warps=max(4, min(16, bh * bn // 1024)),
            )  # fmt: skip
            return sigma
        _power_iteration_multi(
            w, u, v, sigma, H, K, N, n_iter, eps, bool(v_first) and n_iter > 0, row_contig,
            target, block_l, block_i,
        )  # fmt: skip
    return sigma


def _power_iteration_multi(
    w, u, v, sigma, H, K, N, n_iter, eps, v_first, row_contig, target, block_l, block_i
):
    # Lines: rows of M (order u, v), or its columns (v first).
    n_lines, line_len = (N, H) if v_first else (H, N)
    # Tiles of 4096 elements; columns (v first) in wider blocks: they are the contiguous
    # direction of their tiles.
    bl = block_l or min(64 if v_first else 16, next_pow2(n_lines))
    bi = block_i or min(max(32, 4096 // bl), next_pow2(line_len))
    if target is None:
        target = target_programs(w.device, 4)
    # Programs own whole blocks of lines; fewer programs, less partial traffic (programs *
    # line_len written and read back, against n_lines * line_len for W).
    line_blocks = cdiv(n_lines, bl)
    per = cdiv(line_blocks, max(1, min(target, line_blocks))) * bl
    progs = cdiv(n_lines, per)
    n_comb = cdiv(line_len, _VEC_BLOCK)

    acc = _acc_dtype(w.dtype)
    scratch = torch.empty(
        n_lines + line_len + progs * line_len + 2 * progs + n_comb, dtype=acc, device=w.device
    )
    f, s, part, fsq2, ssq = scratch.split([n_lines, line_len, progs * line_len, 2 * progs, n_comb])
    fsq = (fsq2[:progs], fsq2[progs:])

    def fused(x, i, phase2):
        _sn_fused_kernel[(progs,)](
            w, x, f, fsq[i % 2], part, fsq[(i + 1) % 2], progs, ssq, n_comb,
            H, K, N, n_lines, line_len, per, eps,
            BLOCK_L=bl, BLOCK_I=bi, TRANSPOSED=v_first, ROW_CONTIG=row_contig,
            HAS_PREV=i > 0, PHASE2=phase2, num_warps=4,
        )  # fmt: skip

    if n_iter == 0:
        fused(v, 0, False)
        _sn_dot_kernel[(1,)](u, f, sigma, H, BLOCK=min(1024, next_pow2(H)), num_warps=4)
        return
    for i in range(n_iter):
        fused((u if v_first else v) if i == 0 else s, i, True)
        _sn_combine_kernel[(n_comb,)](part, progs, s, ssq, line_len, BLOCK=_VEC_BLOCK, num_warps=4)
    out_f, out_s = (v, u) if v_first else (u, v)
    _sn_finalize_kernel[(cdiv(max(n_lines, line_len), _VEC_BLOCK),)](
        f, n_lines, fsq[(n_iter - 1) % 2], progs, s, line_len, ssq, n_comb, out_f, out_s,
        sigma, eps, BLOCK=_VEC_BLOCK, num_warps=4,
    )  # fmt: skip


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


_ACC_PTRS = (
    "t_ptr", "f_ptr", "s_ptr", "fsq_ptr", "ssq_ptr", "prev_fsq_ptr", "prev_ssq_ptr", "part_ptr",
)  # fmt: skip
# Device helpers, compiled as part of the kernels that call them.
AOT_HELPERS = ("_sum_parts", "_line_offsets")


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
                    dict(
                        BLOCK_H=64,
                        BLOCK_N=128,
                        HAS_ITER=flag,
                        V_FIRST=not flag,
                        ROW_CONTIG=flag,
                        FP64=fp64,
                    ),
                ),
                # First iteration (x is u or v, HAS_PREV off) and later ones (x = s).
                _aot_spec(
                    _sn_fused_kernel,
                    dt,
                    dict(
                        BLOCK_L=16,
                        BLOCK_I=256,
                        TRANSPOSED=flag,
                        ROW_CONTIG=flag,
                        HAS_PREV=not flag,
                        PHASE2=True,
                    ),
                    x_ptr="*" + dt if flag else acc_ptr,
                ),
                _aot_spec(
                    _sn_fused_kernel,
                    dt,
                    dict(
                        BLOCK_L=16,
                        BLOCK_I=256,
                        TRANSPOSED=not flag,
                        ROW_CONTIG=not flag,
                        HAS_PREV=False,
                        PHASE2=flag,
                    ),
                ),
            ]
        specs += [
            _aot_spec(_sn_combine_kernel, dt, dict(BLOCK=_VEC_BLOCK)),
            _aot_spec(_sn_finalize_kernel, dt, dict(BLOCK=_VEC_BLOCK)),
            _aot_spec(_sn_dot_kernel, dt, dict(BLOCK=1024)),
            _aot_spec(_sn_bwd_small_kernel, dt, dict(BLOCK=2048, FP64=fp64)),
            _aot_spec(_sn_bwd_partial_kernel, dt, dict(BLOCK=1024)),
            _aot_spec(_sn_bwd_apply_kernel, dt, dict(BLOCK=1024, BLOCK_P=256)),
        ]
    return specs


AOT_SPECS = _aot_specs()
