"""1-D span geometry ((center, width) <-> (start, end), IoU / GIoU) shared by the model's query
groups and ATSS targets, the losses and the matcher: the one jnp interval IoU. (The host-side,
dtype-preserving numpy one is `evaluation.moment_retrieval.cross_iou`.)"""

from __future__ import annotations

import jax.numpy as jnp


def cxw_to_xx(s):
  """(center, width) [..., 2] -> (start, end)."""
  return jnp.stack([s[..., 0] - s[..., 1] / 2, s[..., 0] + s[..., 1] / 2], axis=-1)


def xx_to_cxw(x):
  return jnp.stack([(x[..., 0] + x[..., 1]) / 2, x[..., 1] - x[..., 0]], axis=-1)


def iou_and_giou(a, b, eps: float = 1e-6):
  """Element-wise IoU and generalised IoU of (start, end) intervals [..., 2] (broadcasting).

  eps guards empty unions / hulls (degenerate zero-length spans), as architecture §12 asks.
  """
  inter = jnp.clip(jnp.minimum(a[..., 1], b[..., 1]) - jnp.maximum(a[..., 0], b[..., 0]), 0)
  union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
  hull = jnp.maximum(a[..., 1], b[..., 1]) - jnp.minimum(a[..., 0], b[..., 0])
  iou = inter / jnp.maximum(union, eps)
  return iou, iou - (hull - union) / jnp.maximum(hull, eps)


def pairwise_iou(a, b):
  """[..., N, 2] x [..., M, 2] (start, end) -> IoU [..., N, M]."""
  return iou_and_giou(a[..., :, None, :], b[..., None, :, :])[0]


def pairwise_giou(a, b):
  """[..., N, 2] x [..., M, 2] (start, end) -> GIoU [..., N, M]."""
  return iou_and_giou(a[..., :, None, :], b[..., None, :, :])[1]


def smooth_l1(x, beta: float = 1.0):
  ax = jnp.abs(x)
  return jnp.where(ax < beta, 0.5 * ax ** 2 / beta, ax - 0.5 * beta)
