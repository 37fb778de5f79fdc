"""Moment-retrieval losses: the DETR head with its query groups (eq. 12) and the ATSS head (eq. 13).

architecture.md §6.2-6.3. Predictions are (c, w) in [0, 1] unless noted; GT spans [B, W, 2] with
mask [B, W]; `match` [B, W] gives the query matched to each GT.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from sg_detr_jax import spans as span_ops
from sg_detr_jax.models import atss


def _gather(x, idx):
  """x [B, Q, ...] at idx [B, W] -> [B, W, ...]."""
  return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def set_losses(logits, spans, iou, gt, gt_mask, match, background_weight) -> dict:
  """One decoder layer (or the encoder proposals) against its Hungarian matching.

  Args:
    logits: [B, Q]; spans: [B, Q, 2]; iou: [B, Q] IoU logits or None.
    gt: [B, W, 2]; gt_mask: [B, W]; match: [B, W] int32.

  Returns:
    {"span": smooth-L1, "giou": 1 - GIoU, "label": weighted BCE, "quality": IoU BCE}.
  """
  n = jnp.maximum(gt_mask.sum(), 1)
  m = gt_mask.astype(spans.dtype)
  pred = _gather(spans, match)
  l1 = (span_ops.smooth_l1(pred - gt).sum(-1) * m).sum() / (2 * n)
  true_iou, giou = span_ops.iou_and_giou(span_ops.cxw_to_xx(pred), span_ops.cxw_to_xx(gt))
  out = {"span": l1, "giou": ((1 - giou) * m).sum() / n}
  matched = jnp.zeros(logits.shape, bool).at[jnp.arange(logits.shape[0])[:, None], match].max(
      gt_mask)
  weight = jnp.where(matched, 1.0, background_weight)
  out["label"] = (weight * optax.sigmoid_binary_cross_entropy(logits, matched.astype(logits.dtype))).mean()
  if iou is not None:
    target = jax.lax.stop_gradient(true_iou)
    out["quality"] = (optax.sigmoid_binary_cross_entropy(_gather(iou, match), target) * m).sum() / n
  return out


def group_losses(logits, spans, label, target, valid) -> dict:
  """Collab / DN queries with fixed targets (no matching).

  Args:
    logits: [B, K]; spans: [B, K, 2]; label: [B, K] bool positives; target: [B, K, 2] (c, w);
    valid: [B, K] bool slots that exist (the official group size).

  Returns:
    {"label": BCE mean over valid slots, "span": L1 on (start, end) over positives (mean over
    positives and both coordinates), "giou": mean 1 - GIoU over positives}.
  """
  pos = (label & valid).astype(spans.dtype)
  n = jnp.maximum(pos.sum(), 1)
  ps, ts = span_ops.cxw_to_xx(spans), span_ops.cxw_to_xx(target)
  _, giou = span_ops.iou_and_giou(ps, ts)
  bce = optax.sigmoid_binary_cross_entropy(logits, label.astype(logits.dtype))
  return {
      "label": (bce * valid).sum() / jnp.maximum(valid.sum(), 1),
      "span": (jnp.abs(ps - ts).sum(-1) * pos).sum() / (2 * n),
      "giou": ((1 - giou) * pos).sum() / n,
  }


def sigmoid_focal(logits, target, alpha, gamma):
  """Element-wise sigmoid focal loss (RetinaNet)."""
  p = jax.nn.sigmoid(logits)
  ce = optax.sigmoid_binary_cross_entropy(logits, target)
  p_t = p * target + (1 - p) * (1 - target)
  alpha_t = alpha * target + (1 - alpha) * (1 - target)
  return alpha_t * ce * (1 - p_t) ** gamma


def atss_losses(pred, targets, lw) -> dict:
  """ATSS head losses over every valid anchor of the batch (architecture.md §6.3).

  Args:
    pred: `Predictions` (atss_logits [B, A], atss_deltas [B, A, 2], atss_ctr [B, A]).
    targets: `atss.Targets` (labels [B, A], gt [B, A, 2], anchors [A, 2], anchor_mask [B, A]),
      clip units.
  """
  valid = targets.anchor_mask
  pos = targets.labels & valid
  n_pos = jnp.maximum(pos.sum(), 1).astype(jnp.float32)
  anchors = jnp.broadcast_to(targets.anchors, targets.gt.shape)
  # The official targets are the GT after a round trip through the box coder (whose width clamp
  # changes GTs more than 62.5x wider than their anchor).
  gt = atss.decode(atss.encode(targets.gt, anchors), anchors)
  logits, deltas, ctr = (x.astype(jnp.float32) for x in (pred.atss_logits, pred.atss_deltas,
                                                          pred.atss_ctr))
  cls = sigmoid_focal(logits, pos.astype(jnp.float32), lw.atss_focal_alpha, lw.atss_focal_gamma)
  ctr_target = jnp.where(pos, atss.centerness(anchors, gt), 0.0)
  ctr_sum = jnp.maximum((ctr_target * pos).sum(), 1e-6)
  box = atss.decode(deltas, anchors)
  # The end is raised to the start for the GIoU only; the smooth-L1 sees the raw decoded box.
  ordered = jnp.stack([box[..., 0], jnp.maximum(box[..., 0], box[..., 1])], axis=-1)
  _, giou = span_ops.iou_and_giou(ordered, gt)
  l1 = span_ops.smooth_l1(box - gt).sum(-1)
  return {
      "label": (cls * valid).sum() / n_pos,
      "giou": (ctr_target * (1 - giou) * pos).sum() / ctr_sum,
      "span": (ctr_target * l1 * pos).sum() / ctr_sum,
      "ctrness": (optax.sigmoid_binary_cross_entropy(ctr, ctr_target) * pos).sum() / n_pos,
  }
