"""Row-wise sums that are bit-identical to `np.sum` / `np.mean` of each row's selected entries.

The official evaluator sums small 1-D arrays one query at a time (`np.sum` of the AP terms, `np.mean`
of the interpolated precisions). NumPy sums a contiguous float64 array by *pairwise summation*: fewer
than 8 values are added left to right; 8..128 values go into 8 interleaved accumulators combined as
((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)), and the remaining n % 8 values are then added left to right;
longer arrays are split in two (halves rounded to multiples of 8) recursively. A plain row-wise
`sum(axis=1)` over zero-padded rows would group the values differently and can change the last bit,
and the last bit can flip a rounded metric. `pairwise_sum_rows` reproduces the grouping for every row
at once, so the per-query loops can go without changing a single result bit.
(`tests/test_evaluation_vectorized.py` checks it against `np.sum` for rows of 1 to 300 values.)
"""

from __future__ import annotations

import numpy as np

# NumPy's PW_BLOCKSIZE: up to this many values are summed with the 8-accumulator loop.
_PW_BLOCK = 128
_UNROLL = 8


def compact_rows(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Moves every row's selected entries to its front, keeping their order, and zero-fills the rest.

  Args:
    values: [R, L] float64.
    mask: [R, L] bool, the entries to keep.

  Returns:
    packed [R, W] (W = L rounded up to a multiple of 8, at least 8) and counts [R].
  """
  rows, cols = np.nonzero(mask)
  counts = np.bincount(rows, minlength=mask.shape[0])
  width = padded_width(mask.shape[1])
  packed = np.zeros((mask.shape[0], width), dtype=np.float64)
  starts = np.cumsum(counts) - counts
  packed[rows, np.arange(rows.size) - starts[rows]] = values[rows, cols]
  return packed, counts


def pairwise_sum_rows(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`np.sum(values[r][mask[r]])` for every row r, bit for bit, without a Python loop over rows.

  Args:
    values: [R, L] float64.
    mask: [R, L] bool.

  Returns:
    sums [R] float64 and the number of summed entries per row [R] (for a mean: sums / counts, which is
    how `np.mean` divides).
  """
  packed, counts = compact_rows(values, mask)
  return pairwise_sum_packed(packed, counts), counts


def pairwise_sum_packed(packed: np.ndarray, counts: np.ndarray) -> np.ndarray:
  """`np.sum(packed[r, :counts[r]])` for every row r, bit for bit.

  Args:
    packed: [R, W] float64, W a multiple of 8 (entries at and after counts[r] are ignored).
    counts: [R] values per row.

  Returns:
    [R] sums.
  """
  num_rows, width = packed.shape
  if width % _UNROLL:
    raise ValueError(f"packed rows must be a multiple of {_UNROLL} wide, got {width}")
  sums = np.zeros(num_rows, dtype=np.float64)
  small = counts <= _PW_BLOCK
  if np.all(small):
    return _sum_up_to_block(packed, counts)
  sums[small] = _sum_up_to_block(packed[small], counts[small])
  for r in np.nonzero(~small)[0]:  # > 128 values: rare, let NumPy do its recursion
    sums[r] = np.sum(packed[r, :counts[r]])
  return sums


def padded_width(n: int) -> int:
  """The row width `pairwise_sum_packed` needs for up to n values: a multiple of 8, at least 8."""
  return max(_UNROLL, -(-n // _UNROLL) * _UNROLL)


def _sum_up_to_block(packed: np.ndarray, counts: np.ndarray) -> np.ndarray:
  """NumPy's pairwise sum of the first counts[r] (<= 128) entries of every row of `packed`.

  (Up to the sign of a zero sum: the accumulators start at +0.0; the metrics never sum negatives.)
  """
  num_rows, width = packed.shape
  blocks = packed.reshape(num_rows, width // _UNROLL, _UNROLL)
  full = counts // _UNROLL * _UNROLL  # values that go through the 8 accumulators (0 if n < 8)
  acc = np.zeros((num_rows, _UNROLL))
  for b in range(blocks.shape[1]):
    in_full = (b * _UNROLL < full)[:, None]
    if not np.any(in_full):
      break
    acc += np.where(in_full, blocks[:, b], 0.0)  # adding 0.0 to an untouched row is exact
  res = ((acc[:, 0] + acc[:, 1]) + (acc[:, 2] + acc[:, 3])) + (
      (acc[:, 4] + acc[:, 5]) + (acc[:, 6] + acc[:, 7]))
  # The n % 8 leftovers (all n values when n < 8, starting from res = 0.0), left to right.
  rows = np.arange(num_rows)
  for k in range(_UNROLL):
    pos = full + k
    take = pos < counts
    if not np.any(take):
      break
    res = res + np.where(take, packed[rows, np.minimum(pos, width - 1)], 0.0)
  return res
