"""Hungarian matching on the host (scipy) called from the jitted loss (architecture.md §4).

The cost matrices are computed on the device; one `jax.pure_callback` sends all of them (every
decoder layer and the encoder proposals, the whole batch) to the host, where
`scipy.optimize.linear_sum_assignment` solves each sample's Q x n_gt problem.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from scipy.optimize import linear_sum_assignment

from sg_detr_jax import spans as span_ops


def match_cost(pred_spans, pred_logits, pred_iou, gt_spans, lw):
  """C[q, g] = c_span |s_q - g|_1 - c_giou GIoU - c_class sigmoid(logit_q) - c_iou sigmoid(iou_q).

  Args:
    pred_spans: [..., Q, 2] (c, w); pred_logits / pred_iou: [..., Q] (pred_iou may be None).
    gt_spans: [..., W, 2] (c, w).
    lw: `config.loss` (the cost weights).

  Returns:
    [..., Q, W] costs (no gradient).
  """
  pred_spans, gt_spans = jax.lax.stop_gradient(pred_spans), jax.lax.stop_gradient(gt_spans)
  l1 = jnp.abs(pred_spans[..., :, None, :] - gt_spans[..., None, :, :]).sum(-1)
  giou = span_ops.pairwise_giou(span_ops.cxw_to_xx(pred_spans), span_ops.cxw_to_xx(gt_spans))
  cost = lw.cost_span * l1 - lw.cost_giou * giou
  per_query = -lw.cost_class * jax.nn.sigmoid(jax.lax.stop_gradient(pred_logits))
  if pred_iou is not None:
    per_query = per_query - lw.cost_iou * jax.nn.sigmoid(jax.lax.stop_gradient(pred_iou))
  return cost + per_query[..., None]


def _solve(cost: np.ndarray, gt_mask: np.ndarray) -> np.ndarray:
  """Host side: cost [..., Q, W], gt_mask [..., W] (broadcast) -> query index per GT [..., W]."""
  # Non-finite costs (a diverged forward) must not crash inside the callback: the train step
  # reports the non-finite loss itself, with the terms named, and skips the update.
  cost = np.nan_to_num(np.asarray(cost, np.float64), nan=1e9, posinf=1e9, neginf=-1e9)

  mask = np.broadcast_to(np.asarray(gt_mask, bool), cost.shape[:-2] + cost.shape[-1:])
  out = np.zeros(mask.shape, np.int32)
  flat_cost = cost.reshape(-1, *cost.shape[-2:])
  flat_mask, flat_out = mask.reshape(-1, mask.shape[-1]), out.reshape(-1, mask.shape[-1])
  for i in range(flat_cost.shape[0]):
    cols = np.flatnonzero(flat_mask[i])
    if len(cols) == 0:
      continue
    rows, picked = linear_sum_assignment(flat_cost[i][:, cols])
    flat_out[i, cols[picked]] = rows
  return out


def hungarian(cost: jax.Array, gt_mask: jax.Array, mesh=None, axis: str | None = None,
              batch_dim: int = 0) -> jax.Array:
  """Optimal one-to-one assignment of GTs to queries, from inside jit.

  Args:
    cost: [..., Q, W] (Q >= number of valid GTs).
    gt_mask: [..., W] bool, broadcastable to cost[..., 0, :].
    mesh, axis: when the batch is split over mesh axis `axis`, the callback runs inside
      `jax.shard_map`, so every device sends only its own rows to its host (a sharded batch is
      never gathered onto one device for matching).
    batch_dim: the batch dimension of `cost` (split over `axis`).

  Returns:
    [..., W] int32: the query matched to each GT (0 for invalid GTs; mask them with gt_mask).
  """
  gt_mask = jnp.broadcast_to(gt_mask, cost.shape[:-2] + cost.shape[-1:])

  def solve(c, m):
    shape = jax.ShapeDtypeStruct(c.shape[:-2] + c.shape[-1:], jnp.int32)
    return jax.pure_callback(_solve, shape, c, m, vmap_method="sequential")

  if mesh is not None and mesh.shape[axis] > 1:
    spec = P(*([None] * batch_dim), axis)
    solve = jax.shard_map(solve, mesh=mesh, in_specs=(spec, spec), out_specs=spec,
                          check_vma=False)
  return jax.lax.stop_gradient(solve(jax.lax.stop_gradient(cost), gt_mask))
