"""ATSS anchors, box coding and assignment in 1-D (architecture.md §3.8), pure jnp functions.

Units: feature-index (clip) units throughout, with the dataset's clip length applied by callers
(ambiguity A11: the official code hard-codes 2-s clips). One anchor per position; level l has stride
s_l and size a_l clips; anchor k spans center -+ (a_l - 1) / 2 with center = s_l * k + s_l / 2.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from sg_detr_jax import spans as span_ops
from sg_detr_jax.models.fpn import FPN, STRIDES

BOX_WEIGHTS = (10.0, 5.0)
MAX_DW = math.log(1000.0 / 16)


def make_anchors(num_clips: int, strides, sizes) -> tuple[np.ndarray, np.ndarray]:
  """All anchors of a padded video of `num_clips` clips.

  Returns:
    anchors [A, 2] (x1, x2) in clip units, level id [A]; levels concatenated in order.
  """
  out, level = [], []
  for i, (s, a) in enumerate(zip(strides, sizes)):
    n = int(round(num_clips / s))
    center = s * np.arange(n) + s / 2
    out.append(np.stack([center - (a - 1) / 2, center + (a - 1) / 2], axis=1))
    level.append(np.full(n, i))
  return np.concatenate(out).astype(np.float32), np.concatenate(level)


def encode(gt: jax.Array, anchors: jax.Array) -> jax.Array:
  """(dx, dw) regression targets of gt [.., 2] w.r.t. anchors [.., 2], "+1" width convention."""
  aw = anchors[..., 1] - anchors[..., 0] + 1
  ac = (anchors[..., 0] + anchors[..., 1]) / 2
  gw = gt[..., 1] - gt[..., 0] + 1
  gc = (gt[..., 0] + gt[..., 1]) / 2
  return jnp.stack([BOX_WEIGHTS[0] * (gc - ac) / aw, BOX_WEIGHTS[1] * jnp.log(gw / aw)], axis=-1)


def decode(deltas: jax.Array, anchors: jax.Array) -> jax.Array:
  """Inverse of `encode`: (dx, dw) [.., 2] -> (start, end) [.., 2]; dw/5 clamped at log(1000/16)."""
  aw = anchors[..., 1] - anchors[..., 0] + 1
  ac = (anchors[..., 0] + anchors[..., 1]) / 2
  pc = deltas[..., 0] / BOX_WEIGHTS[0] * aw + ac
  pw = jnp.exp(jnp.minimum(deltas[..., 1] / BOX_WEIGHTS[1], MAX_DW)) * aw
  return jnp.stack([pc - (pw - 1) / 2, pc + (pw - 1) / 2], axis=-1)


def assign(anchors: jax.Array, level_sizes, gt: jax.Array, gt_mask: jax.Array, top_k: int,
           anchor_mask: jax.Array | None = None):
  """ATSS assignment of one sample.

  Args:
    anchors: [A, 2] (x1, x2) clip units, levels concatenated with sizes `level_sizes` (static).
    level_sizes: number of anchors of each level.
    gt: [G, 2] ground-truth (start, end) in clip units (padded).
    gt_mask: [G] bool, valid GT.
    top_k: candidates per level (closest centers).
    anchor_mask: [A] bool, anchors inside the sample's valid length (the official code builds
      anchors per sample over its own length); None = all.

  Returns:
    labels [A] bool (positive), matched [A] int32 GT index, targets [A, 2] = encode(gt[matched]).
  """
  centers = (anchors[:, 0] + anchors[:, 1]) / 2
  gt_c = (gt[:, 0] + gt[:, 1]) / 2
  dist = jnp.abs(centers[:, None] - gt_c[None, :])  # [A, G]
  if anchor_mask is None:
    anchor_mask = jnp.ones(anchors.shape[0], bool)
  dist = jnp.where(anchor_mask[:, None], dist, jnp.inf)
  cand = []
  start = 0
  for n in level_sizes:
    k = min(top_k, n)
    _, idx = jax.lax.top_k(-dist[start:start + n].T, k)  # [G, k] closest anchors of this level
    cand.append(jnp.zeros((gt.shape[0], n), bool).at[jnp.arange(gt.shape[0])[:, None], idx].set(
        True))
    start += n
  cand = jnp.concatenate(cand, axis=1).T & anchor_mask[:, None]  # [A, G]
  iou = span_ops.pairwise_iou(anchors, gt)  # [A, G]
  num = cand.sum(0)
  mean = (iou * cand).sum(0) / num
  std = jnp.sqrt(((iou - mean) ** 2 * cand).sum(0) / (num - 1))  # unbiased, as torch.std
  inside = jnp.minimum(centers[:, None] - gt[None, :, 0], gt[None, :, 1] - centers[:, None]) > 1e-7
  positive = cand & (iou >= (mean + std)[None, :]) & inside & gt_mask[None, :]
  score = jnp.where(positive, iou, -1.0)
  matched = jnp.argmax(score, axis=1).astype(jnp.int32)
  labels = positive.any(axis=1)
  return labels, matched, encode(gt[matched], anchors)


def centerness(anchors: jax.Array, gt: jax.Array) -> jax.Array:
  """Target centerness c* = min(c - gs, ge - c) / max(c - gs, ge - c) of anchor centers in gt."""
  c = (anchors[..., 0] + anchors[..., 1]) / 2
  left, right = c - gt[..., 0], gt[..., 1] - c
  return jnp.clip(jnp.minimum(left, right), 0) / jnp.maximum(jnp.maximum(left, right), 1e-6)


def batch_targets(spans, span_mask, span_seconds, clip_len, anchors, level_sizes, anchor_mask,
                  top_k: int, gt_tolerance: float = 0.0):
  """ATSS labels and matched GT of a batch, from the ground truth and the anchors alone.

  Seconds -> clip units as the official code: float32 GT seconds truncated toward zero (A11), so
  float32 round-off moves a boundary by a whole second (49.99998 s -> 49 s); a positive
  `gt_tolerance` (seconds, e.g. 1e-3) added before the truncation prevents that.

  Args:
    spans: [B, W, 2] normalised (c, w); span_mask: [B, W] bool; span_seconds / clip_len: [B].
    anchors: [A, 2] clip units; level_sizes: anchors per level (static); anchor_mask: [B, A].
    top_k: candidates per level.

  Returns:
    labels [B, A] bool, matched GT (start, end) [B, A, 2] in clip units.
  """
  xx = span_ops.cxw_to_xx(spans.astype(jnp.float32))
  seconds = span_seconds.astype(jnp.float32)[:, None, None]
  gt = jnp.trunc(xx * seconds + gt_tolerance) / clip_len.astype(jnp.float32)[:, None, None]
  one = lambda g, gm, am: assign(anchors, level_sizes, g, gm, top_k, am)
  labels, matched, _ = jax.vmap(one)(gt, span_mask, anchor_mask)
  return labels, jnp.take_along_axis(gt, matched[..., None], axis=1)


def grid_rows(video_mask: jax.Array, anchor_grid: str,
              grid_len: jax.Array | None = None) -> jax.Array:
  """[B, L] rows whose anchors are ATSS candidates (assignment, loss, post-processing).

  "batch" (official): the batch's padded grid, i.e. every row up to the longest valid length of
  the batch, including rows past a sample's own length. "sample": the sample's valid rows.
  `grid_len` (int scalar): the batch's grid length when `video_mask` holds only part of the
  batch (a microbatch of the inference forward); by default the longest row of `video_mask`.
  """
  if anchor_grid == "sample":
    return video_mask
  if anchor_grid != "batch":
    raise ValueError(f"model.atss_anchor_grid must be 'batch' or 'sample', got {anchor_grid!r}")
  if grid_len is None:
    grid_len = video_mask.sum(axis=1).max()
  rows = jnp.arange(video_mask.shape[1]) < grid_len
  return jnp.broadcast_to(rows, video_mask.shape)


def anchor_grid(video_mask: jax.Array, m,
                grid_len: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """The anchors of a batch and their candidate mask, from the video mask [B, L] alone.

  Args:
    video_mask: [B, L] bool; m: `config.model` (anchor_sizes, atss_anchor_grid); grid_len: see
      `grid_rows`.

  Returns:
    anchors [A, 2] (x1, x2) clip units over the static grid, anchor_mask [B, A] (`grid_rows`
    through the FPN's level masks).
  """
  anchors, _ = make_anchors(video_mask.shape[1], STRIDES, m.anchor_sizes)
  rows = grid_rows(video_mask, m.atss_anchor_grid, grid_len)
  return jnp.asarray(anchors), jnp.concatenate(FPN.level_masks(rows), axis=1)


@struct.dataclass
class Targets:
  """ATSS training targets of a batch: labels [B, A] bool (positive anchors), gt [B, A, 2] the
  matched GT (start, end) in clip units, anchors [A, 2], anchor_mask [B, A] (`anchor_grid`)."""
  labels: jax.Array
  gt: jax.Array
  anchors: jax.Array
  anchor_mask: jax.Array


def training_targets(batch: dict, m) -> Targets:
  """ATSS assignment of a training batch: it depends on the ground truth and the anchors only.

  Args:
    batch: video_mask [B, L], spans [B, W, 2] (c, w), span_mask [B, W], span_seconds [B],
      clip_len [B]; m: `config.model` (anchor_sizes, atss_anchor_grid, atss_top_k,
      atss_gt_tolerance).
  """
  video_mask = batch["video_mask"].astype(bool)
  anchors, anchor_mask = anchor_grid(video_mask, m)
  _, level = make_anchors(video_mask.shape[1], STRIDES, m.anchor_sizes)
  level_sizes = tuple(int(n) for n in np.bincount(level))
  labels, gt = batch_targets(batch["spans"], batch["span_mask"], batch["span_seconds"],
                             batch["clip_len"], anchors, level_sizes, anchor_mask, m.atss_top_k,
                             m.atss_gt_tolerance)
  return Targets(labels=labels, gt=gt, anchors=anchors, anchor_mask=anchor_mask)
