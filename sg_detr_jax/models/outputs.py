"""What the model returns: typed pytrees instead of a flat dict (they pass through `jax.jit`).

Shapes: B batch, L clips, Q = `model.num_queries`, A anchors (all FPN levels concatenated), N
decoder layers, K queries of an extra training group, d = `model.d_model`. Spans are normalised
(center, width) in [0, 1]; ATSS boxes and anchors are in clip units.
"""

from __future__ import annotations

import dataclasses

import jax
from flax import struct


@struct.dataclass
class Predictions:
  """The inference outputs, everything post-processing and evaluation read.

  saliency_local / saliency_global [B, L]: local and global saliency logits (the HD output).
  pred_logits [N, B, Q], pred_spans [N, B, Q, 2], pred_iou [N, B, Q] (IoU head; None without it):
    the DETR decoder, every layer (the last one is the prediction, the others are auxiliary).
  enc_logits [B, Q], enc_iou [B, Q], enc_spans [B, Q, 2]: the query selector's proposals.
  atss_logits [B, A], atss_deltas [B, A, 2] (dx, dw), atss_ctr [B, A]: the ATSS head (with
    `model.atss`, else None).
  anchors [A, 2] (x1, x2), anchor_mask [B, A] ATSS candidates (`model.atss_anchor_grid`): with
    `model.atss` or `model.collab`, else None.
  """
  saliency_local: jax.Array
  saliency_global: jax.Array
  pred_logits: jax.Array
  pred_spans: jax.Array
  enc_logits: jax.Array
  enc_iou: jax.Array
  enc_spans: jax.Array
  pred_iou: jax.Array | None = None
  atss_logits: jax.Array | None = None
  atss_deltas: jax.Array | None = None
  atss_ctr: jax.Array | None = None
  anchors: jax.Array | None = None
  anchor_mask: jax.Array | None = None


# The batch axis of every field of `Predictions` (None: shared by all rows).
_PREDICTION_BATCH_AXIS = {"pred_logits": 1, "pred_spans": 1, "pred_iou": 1, "anchors": None}


def join_parts(stacked: Predictions, rest: Predictions | None = None) -> Predictions:
  """One batch's predictions from those of its parts: `stacked`, K equal parts of R rows on a new
  leading axis (the outputs of a `lax.scan` over them), then `rest`, the last, shorter part (or
  None)."""
  def join(name):
    value, axis = getattr(stacked, name), _PREDICTION_BATCH_AXIS.get(name, 0)
    if value is None or axis is None:
      return None if value is None else value[0]
    # [K, ..., R, ...] (the part axis first, the rows at `axis` + 1) -> [..., K * R, ...]
    value = jax.numpy.moveaxis(value, 0, axis)
    value = value.reshape(value.shape[:axis] + (-1,) + value.shape[axis + 2:])
    if rest is not None:
      value = jax.numpy.concatenate([value, getattr(rest, name)], axis=axis)
    return value
  return Predictions(**{f.name: join(f.name) for f in dataclasses.fields(Predictions)})


@struct.dataclass
class QueryGroup:
  """An extra decoder query group of training (collab or denoising), isolated by the group mask.

  logits [N, B, K], spans [N, B, K, 2]: the decoder's outputs for the group, every layer.
  label [B, K] bool (a positive query), target [B, K, 2] (c, w) its span target, valid [K] the
  slots in use. present [B, K]: DN queries that stand for a real GT (None for collab).
  """
  logits: jax.Array
  spans: jax.Array
  label: jax.Array
  target: jax.Array
  valid: jax.Array
  present: jax.Array | None = None


@struct.dataclass
class TrainOutputs:
  """The training forward: the predictions plus what only the losses read.

  saliency_local_neg / saliency_global_neg [B, L]: each video scored against the next row's text
    (the loss keeps the rows whose partner is a real negative, `losses.saliency.real_negatives`).
  sentence [B, d], moment [B, d], moment_memory [B, L, d]: the CG-DETR alignment branches.
  collab / denoise: the extra query groups (None when off).
  collab_positives []: max_b |P_b|, the collab group the official code would build for this batch
    (logged, not a loss; None without collab).
  """
  predictions: Predictions
  saliency_local_neg: jax.Array
  saliency_global_neg: jax.Array
  sentence: jax.Array
  moment: jax.Array
  moment_memory: jax.Array
  collab: QueryGroup | None = None
  denoise: QueryGroup | None = None
  collab_positives: jax.Array | None = None


def flatten(out: Predictions | TrainOutputs) -> dict[str, jax.Array]:
  """{name: array} of the fields that are present: the predictions' fields by their own names (also
  inside `TrainOutputs`), the groups' as "collab.logits", "denoise.label", ... (summaries, tests)."""
  flat = {}
  for field in dataclasses.fields(out):
    value = getattr(out, field.name)
    if isinstance(value, Predictions):
      flat.update(flatten(value))
    elif isinstance(value, QueryGroup):
      flat.update({f"{field.name}.{k}": v for k, v in flatten(value).items()})
    elif value is not None:
      flat[field.name] = value
  return flat
