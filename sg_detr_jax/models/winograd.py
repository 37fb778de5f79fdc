"""Winograd F(4, 3): a 1-D convolution with kernel 3 in half the multiplications (Lavin & Gray 2016).

The ATSS head's stems are 6 convolutions (k = 3, 256 -> 256 channels) over every FPN level: a
third of the inference forward's FLOPs and a quarter of the train step's (QVHighlights shapes).
A direct convolution spends 3 products [rows, Cin] x [Cin, Cout] per output row; F(4, 3) cuts the
input into tiles of 6 rows that overlap by 2, maps each tile through B^T (additions and small
integer multiples), runs 6 products per 4 output rows with the transformed kernel G k, and maps
the products back through A^T: 1.5 instead of 3 products per row, forward and backward (the
backward of these products is again 6 products per tile; `matmul.dense` keeps them 2-D GEMMs).

Not bitwise the direct convolution: the transforms reorder and rescale the sums. In float32 on
unit-scale inputs the error stays within a few 1e-6 of the output's scale, against ~5e-7 for the
direct sum (tests/test_matmul.py). Hence a switch (`model.conv_algorithm`), and "direct",
the official arithmetic, stays the default.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sg_detr_jax.models import matmul

TILE_OUT, TAPS = 4, 3  # F(m = 4, r = 3): 4 outputs per tile of m + r - 1 = 6 inputs
TILE_IN = TILE_OUT + TAPS - 1

# Interpolation points 0, 1, -1, 2, -2 and infinity (the usual choice for F(4, 3)).
_BT = np.array([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]], np.float64)
_G = np.array([[1 / 4, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6],
               [0, 0, 1]], np.float64)
_AT = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], np.float64)


def _combine(matrix_row: np.ndarray, terms: list[jax.Array]) -> jax.Array:
  """sum_j matrix_row[j] * terms[j] over the non-zero coefficients (unit ones without a product)."""
  out = None
  for c, t in zip(matrix_row, terms):
    if c == 0:
      continue
    t = t if c == 1 else (-t if c == -1 else t * jnp.asarray(c, t.dtype))
    out = t if out is None else out + t
  return out


def conv1d(x: jax.Array, k: jax.Array, operand_dtype: str = "float32") -> jax.Array:
  """The stride-1, zero-padded (1 each side) convolution of `matmul.conv1d` for 3 taps:
  x [B, L, Cin] * k [3, Cin, Cout] -> [B, L, Cout], y[t] = sum_i x[t + i - 1] @ k[i].

  Plain JAX: its gradient is JAX's, through the transforms and `matmul.dense`.
  """
  if k.shape[0] != TAPS:
    raise ValueError(f"Winograd F(4, 3) needs a 3-tap kernel, got {k.shape[0]} taps")
  b, length, c_in = x.shape
  tiles = -(-length // TILE_OUT)
  # One zero row before (the convolution's padding), enough after for the last whole tile.
  xp = jnp.pad(x, ((0, 0), (1, TILE_OUT * tiles + TILE_IN - TILE_OUT - 1 - length), (0, 0)))
  # Row p of every tile: tile j starts at row 4 j of the padded input.
  rows = [xp[:, p:p + TILE_OUT * (tiles - 1) + 1:TILE_OUT].reshape(b * tiles, c_in)
          for p in range(TILE_IN)]
  kf = k.astype(jnp.float32)
  taps = [kf[i] for i in range(TAPS)]
  products = [matmul.dense(_combine(_BT[q], rows), _combine(_G[q], taps).astype(k.dtype),
                           operand_dtype)
              for q in range(TILE_IN)]  # [B * tiles, Cout] each
  y = jnp.stack([_combine(_AT[r], products) for r in range(TILE_OUT)], axis=1)
  return y.reshape(b, tiles * TILE_OUT, -1)[:, :length]
