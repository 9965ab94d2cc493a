"""Triton kernels of gankernels (one module per op, each exposing `AOT_SPECS`)."""
