"""Post-processing of one sample's outputs into scored windows (architecture.md §5), host numpy.

DETR: final-layer spans with confidence sqrt(p * u) (eq. 10; p without the IoU head).
ATSS: decoded anchors with sqrt(p_cls * p_ctr), threshold, 1-D NMS, top-k.
WBF: 1-D weighted boxes fusion of both lists, then the window clean-up of the official writers.
All windows are [N, 3] float64 (start, end, score) in seconds.
"""

from __future__ import annotations

import numpy as np

from sg_detr_jax.models import atss as atss_ops


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def detr_windows(spans, logits, iou_logits, span_seconds, duration) -> np.ndarray:
  """spans [Q, 2] (c, w) normalised by `span_seconds` -> [Q, 3] sorted by confidence."""
  spans = np.asarray(spans, np.float64)
  score = _sigmoid(logits)
  if iou_logits is not None:
    score = np.sqrt(score * _sigmoid(iou_logits))
  st = np.clip((spans[:, 0] - spans[:, 1] / 2) * span_seconds, 0, duration)
  ed = np.clip((spans[:, 0] + spans[:, 1] / 2) * span_seconds, 0, duration)
  out = np.stack([st, ed, score], axis=1)
  return out[np.argsort(-score, kind="stable")]


def interval_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of one interval a [2] against b [N, 2]."""
  inter = np.clip(np.minimum(a[1], b[:, 1]) - np.maximum(a[0], b[:, 0]), 0, None)
  union = (a[1] - a[0]) + (b[:, 1] - b[:, 0]) - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(windows: np.ndarray, iou_threshold: float, top_k: int) -> np.ndarray:
  """Greedy 1-D NMS on [N, 3] windows (any order) -> at most top_k, by score."""
  windows = windows[np.argsort(-windows[:, 2], kind="stable")]
  keep = []
  alive = np.ones(len(windows), bool)
  for i in range(len(windows)):
    if not alive[i]:
      continue
    keep.append(i)
    if len(keep) == top_k:
      break
    alive[i + 1:] &= interval_iou(windows[i, :2], windows[i + 1:, :2]) <= iou_threshold
  return windows[keep]


def atss_windows(logits, deltas, ctr, anchors, anchor_mask, clip_len, duration, pp) -> np.ndarray:
  """Dense ATSS predictions of one sample -> NMS-ed top-k [K, 3] in seconds."""
  score = np.sqrt(_sigmoid(logits) * _sigmoid(ctr))
  keep = np.asarray(anchor_mask, bool) & (score > pp.atss_pre_threshold)
  if not keep.any():
    return np.zeros((0, 3))
  boxes = np.asarray(atss_ops.decode(np.asarray(deltas)[keep], np.asarray(anchors)[keep]),
                     np.float64) * clip_len
  boxes = np.clip(boxes, 0, duration)
  windows = np.concatenate([boxes, score[keep][:, None]], axis=1)
  windows = windows[windows[:, 1] > windows[:, 0]]
  return nms(windows, pp.atss_nms_iou, pp.atss_top_k)


def weighted_boxes_fusion(lists, weights, span_seconds, iou_threshold, skip) -> np.ndarray:
  """1-D WBF (ZFTurbo, conf_type "avg") of several [N, 3] window lists -> fused [M, 3].

  Spans are normalised by `span_seconds` and clipped to [0, 1]; entries shorter than zero or with
  confidence < skip are dropped; each entry weighs w * conf. Greedy clustering against the fused
  boxes at IoU > iou_threshold; the fused box is the (w * conf)-weighted mean of its members and
  its score the members' mean w * conf, rescaled by min(n_lists, |cluster|) / sum(weights).
  """
  entries = []
  for windows, w in zip(lists, weights):
    for st, ed, conf in np.asarray(windows, np.float64).reshape(-1, 3):
      st, ed = np.clip([st / span_seconds, ed / span_seconds], 0, 1)
      if ed > st and conf >= skip:
        entries.append((st, ed, w * conf))
  if not entries:
    return np.zeros((0, 3))
  entries = np.asarray(entries)
  entries = entries[np.argsort(-entries[:, 2], kind="stable")]
  members: list[list[np.ndarray]] = []
  fused = np.zeros((0, 3))
  for e in entries:
    best = -1
    if len(fused):
      ious = interval_iou(e[:2], fused[:, :2])
      j = int(np.argmax(ious))
      if ious[j] > iou_threshold:
        best = j
    if best < 0:
      members.append([e])
      fused = np.vstack([fused, e])
      continue
    members[best].append(e)
    m = np.asarray(members[best])
    box = (m[:, :2] * m[:, 2:3]).sum(0) / m[:, 2].sum()
    fused[best] = (box[0], box[1], m[:, 2].mean())
  scale = np.array([min(len(lists), len(m)) for m in members]) / float(np.sum(weights))
  fused[:, 2] *= scale
  fused = fused[np.argsort(-fused[:, 2], kind="stable")]
  fused[:, :2] *= span_seconds
  return fused


def clean_windows(windows: np.ndarray, clip_len: float, duration: float) -> np.ndarray:
  """Clamp to [0, duration], round to multiples of clip_len, widen windows shorter than a clip."""
  w = np.array(windows, np.float64).reshape(-1, 3)
  w[:, :2] = np.clip(w[:, :2], 0, duration)
  w[:, :2] = np.round(w[:, :2] / clip_len) * clip_len  # numpy rounds half to even, as torch
  short = (w[:, 1] - w[:, 0]) < clip_len
  center = (w[short, 0] + w[short, 1]) / 2
  w[short, 0], w[short, 1] = center - clip_len / 2, center + clip_len / 2
  w[:, :2] = np.clip(w[:, :2], 0, duration)
  return w


def sample_windows(out: dict, i: int, span_seconds: float, clip_len: float, duration: float,
                   pp) -> dict[str, np.ndarray]:
  """Both prediction lists of sample i of a batch of host outputs: {"detr": ..., "fused": ...}."""
  detr = detr_windows(out["pred_spans"][-1, i], out["pred_logits"][-1, i],
                      out["pred_iou"][-1, i] if "pred_iou" in out else None, span_seconds,
                      duration)
  result = {"detr": clean_windows(detr, clip_len, duration)}
  if "atss_logits" in out:
    a = atss_windows(out["atss_logits"][i], out["atss_deltas"][i], out["atss_ctr"][i],
                     out["anchors"], out["anchor_mask"][i], clip_len, duration, pp)
    fused = weighted_boxes_fusion([detr, a], pp.wbf_weights, span_seconds, pp.wbf_iou, pp.wbf_skip)
    # An untrained model may have nothing above the fusion's skip threshold: fall back to DETR.
    result["fused"] = clean_windows(fused, clip_len, duration) if len(fused) else result["detr"]
  else:
    result["fused"] = result["detr"]
  return result
