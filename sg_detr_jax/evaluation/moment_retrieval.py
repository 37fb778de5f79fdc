"""Moment-retrieval metrics equal to the official QVHighlights evaluator.

Implements `reference.md` §4.2-4.5: R1@IoU (top-1 window vs the max-IoU ground-truth window), mAP@IoU
(ActivityNet all-point interpolation over the first 10 predictions, stably re-sorted by score), mIoU,
and the length buckets. Every floating-point reduction is performed in the same order and on arrays of
the same layout as the official script, so the rounded numbers agree exactly, not just approximately.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

# `linspace(0.5, 0.95, 10)` rounded to two decimals, as the official script does for its keys and
# comparisons (0.55 rather than 0.5499999...).
MAP_IOU_THRESHOLDS = tuple(float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10))
# The CG-DETR evaluator adds 0.3..0.45 for R1.
R1_IOU_THRESHOLDS_CG = tuple(float(f"{t:.2f}") for t in np.linspace(0.3, 0.95, 14))
MAX_PRED_WINDOWS = 10

# (lo, hi] in seconds; (0, 150) is the special "whole data, unfiltered" case of the official code.
LENGTH_RANGES = {"short": (0, 10), "middle": (10, 30), "long": (30, 150), "full": (0, 150)}


def fmt2(value: float) -> float:
  """Rounds like the official script: print with two decimals and parse back."""
  return float(f"{value:.2f}")


def cross_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
  """1-D IoU of every predicted window with every ground-truth window.

  The package's one numpy interval IoU (post-processing NMS and fusion use it too): computed in the
  inputs' dtype, NaN where the union is 0 (0/0 never passes a `>` threshold).

  Args:
    pred: [P, 2] (start, end).
    gt: [G, 2] (start, end).

  Returns:
    [P, G] IoU; union is the sum of the lengths minus the intersection (reference.md §4.2).
  """
  inter = np.maximum(
      0.0, np.minimum(pred[:, None, 1], gt[None, :, 1]) - np.maximum(pred[:, None, 0], gt[None, :, 0]))
  union = (pred[:, None, 1] - pred[:, None, 0]) + (gt[None, :, 1] - gt[None, :, 0]) - inter
  with np.errstate(invalid="ignore", divide="ignore"):
    return inter / union


def paired_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
  """Element-wise IoU with the hull as union (0 where the hull is 0), as used for R1 and mIoU.

  Args:
    pred: [N, 2]; gt: [N, 2].

  Returns:
    [N] IoU.
  """
  inter = np.maximum(0.0, np.minimum(pred[:, 1], gt[:, 1]) - np.maximum(pred[:, 0], gt[:, 0]))
  hull = np.maximum(pred[:, 1], gt[:, 1]) - np.minimum(pred[:, 0], gt[:, 0])
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(hull == 0, 0.0, inter / np.where(hull == 0, 1.0, hull))


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
  """ActivityNet all-point interpolated AP, batched over thresholds.

  Args:
    precision: [T, K] precision after each of K ranked predictions, one row per IoU threshold.
    recall: [T, K] recall after each ranked prediction.

  Returns:
    [T] AP. Prepends (rec 0, prec 0) and appends (rec 1, prec 0); precision is replaced by its running
    maximum from the end; AP sums (rec_k - rec_{k-1}) * prec_k where recall changes.
  """
  num_t = precision.shape[0]
  mprec = np.hstack([np.zeros((num_t, 1)), precision, np.zeros((num_t, 1))])
  mrec = np.hstack([np.zeros((num_t, 1)), recall, np.ones((num_t, 1))])
  mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
  ap = np.empty(num_t)
  for t in range(num_t):
    # Same index selection and the same 1-D np.sum as the reference, so sums are bit-identical.
    idx = np.where(mrec[t, 1:] != mrec[t, :-1])[0] + 1
    ap[t] = np.sum((mrec[t, idx] - mrec[t, idx - 1]) * mprec[t, idx])
  return ap


def average_precision_per_threshold(
    pred_windows: np.ndarray, pred_scores: np.ndarray, gt_windows: np.ndarray,
    thresholds: Sequence[float] = MAP_IOU_THRESHOLDS) -> np.ndarray:
  """AP of one query's ranked predictions at every IoU threshold (reference.md §4.3 steps 2-5).

  Args:
    pred_windows: [P, 2] predictions in file order (already cut to the first 10).
    pred_scores: [P] their scores.
    gt_windows: [G, 2] all ground-truth windows of the query.
    thresholds: T IoU thresholds.

  Returns:
    [T] AP values.
  """
  thr = np.asarray(thresholds, dtype=np.float64)
  num_t, num_p, num_g = len(thr), len(pred_windows), len(gt_windows)
  order = np.argsort(-pred_scores, kind="stable")  # Python's list.sort(key=-score) is stable.
  iou = cross_iou(pred_windows[order], gt_windows)  # [P, G]
  tp = np.zeros((num_t, num_p))
  used = np.zeros((num_t, num_g), dtype=bool)
  for p in range(num_p):
    # GT windows in descending IoU order; exact ties: higher index first (stable ascending, reversed).
    gt_order = np.argsort(iou[p], kind="stable")[::-1]
    free = ~used[:, gt_order]  # [T, G]
    has_free = free.any(axis=1)
    first = gt_order[np.argmax(free, axis=1)]  # [T] the first unused GT in that order
    hit = has_free & (iou[p, first] >= thr)
    tp[hit, p] = 1.0
    used[np.nonzero(hit)[0], first[hit]] = True
  fp = 1.0 - tp
  tp_cum = np.cumsum(tp, axis=1).astype(float)
  fp_cum = np.cumsum(fp, axis=1).astype(float)
  recall = tp_cum / num_g
  precision = tp_cum / (tp_cum + fp_cum)
  return interpolated_ap(precision, recall)


def _windows_array(windows: Sequence[Sequence[float]]) -> np.ndarray:
  return np.asarray([w[:2] for w in windows], dtype=np.float64).reshape(-1, 2)


def compute_mr_map(submission: Sequence[Mapping], ground_truth: Sequence[Mapping],
                   thresholds: Sequence[float] = MAP_IOU_THRESHOLDS) -> dict:
  """mAP@IoU over queries, in submission order, plus "average" (reference.md §4.3).

  Queries without any predicted window are excluded, as in the reference.
  """
  gt_by_qid = {d["qid"]: d for d in ground_truth}
  rows = []
  for d in submission:
    preds = d["pred_relevant_windows"][:MAX_PRED_WINDOWS]
    if not preds:
      continue
    pw = np.asarray([w[:2] for w in preds], dtype=np.float64)
    ps = np.asarray([w[2] for w in preds], dtype=np.float64)
    rows.append(average_precision_per_threshold(
        pw, ps, _windows_array(gt_by_qid[d["qid"]]["relevant_windows"]), thresholds))
  ap_array = np.array(rows)  # [Q, T]
  ap_thds = ap_array.mean(0)
  result = {str(t): v for t, v in zip(thresholds, ap_thds)}
  result["average"] = np.mean(ap_thds)
  return {k: fmt2(100 * v) for k, v in result.items()}


def top1_ious(submission: Sequence[Mapping], ground_truth: Sequence[Mapping]) -> np.ndarray:
  """IoU of each query's first predicted window with its max-IoU ground-truth window (§4.4).

  Returns:
    [Q] paired IoU, in submission order.
  """
  top1 = {d["qid"]: d["pred_relevant_windows"][0][:2] for d in submission}
  chosen = {}
  for d in ground_truth:
    gts = d["relevant_windows"]
    best = 0
    if len(gts) > 0:
      best = int(np.argmax(cross_iou(np.array([top1[d["qid"]]], dtype=np.float64),
                                     _windows_array(gts))[0]))
    chosen[d["qid"]] = gts[best]
  qids = list(top1)
  pred = np.array([top1[q] for q in qids]).astype(float)
  gt = np.array([chosen[q][:2] for q in qids]).astype(float)
  return paired_iou(pred, gt)


def compute_mr_r1(submission, ground_truth, thresholds=MAP_IOU_THRESHOLDS, with_miou=False) -> dict:
  """R1@IoU (share of queries whose top-1 window reaches the threshold) and optionally mIoU."""
  ious = top1_ious(submission, ground_truth)
  out = {str(t): fmt2(np.mean(ious >= t) * 100) for t in thresholds}
  if with_miou:
    return fmt2(np.mean(ious) * 100), out
  return out


def filter_by_length(submission, ground_truth, length_range):
  """Keeps GT windows with lo < length <= hi, the queries that still have one, and their predictions.

  (0, 150) returns the data unfiltered, like the official code (so windows longer than 150 s count in
  "full").
  """
  lo, hi = length_range
  if lo == 0 and hi == 150:
    return submission, ground_truth
  gt_in_range, qids = [], set()
  for d in ground_truth:
    kept = [w for w in d["relevant_windows"] if lo < (w[1] - w[0]) <= hi]
    if kept:
      gt_in_range.append({**d, "relevant_windows": kept})
      qids.add(d["qid"])
  return [d for d in submission if d["qid"] in qids], gt_in_range


def eval_moment_retrieval(submission, ground_truth, style: str = "cg") -> dict:
  """All MR groups ("short", "middle", "long", "full").

  Args:
    submission: prediction dicts (`pred_relevant_windows` sorted by score, as writers must).
    ground_truth: annotation dicts with `relevant_windows`.
    style: "md" = the official Moment-DETR evaluator (R1 at 0.5..0.95); "cg" = CG-DETR's superset
      (adds R1@0.3..0.45 and "MR-mIoU" first in each group; empty buckets give zeros).

  Returns:
    {range_name: {"MR-mAP": {...}, "MR-R1": {...}}} (plus "MR-mIoU" for "cg").
  """
  if style not in ("md", "cg"):
    raise ValueError(f"unknown evaluation style {style!r}; expected 'md' or 'cg'")
  out = {}
  for name, length_range in LENGTH_RANGES.items():
    sub, gt = filter_by_length(submission, ground_truth, length_range)
    if style == "md":
      out[name] = {"MR-mAP": compute_mr_map(sub, gt), "MR-R1": compute_mr_r1(sub, gt)}
      continue
    if not gt:  # CG's guard: an empty bucket reports zeros and no mIoU.
      zeros = {str(t): 0.0 for t in MAP_IOU_THRESHOLDS}
      out[name] = {"MR-mAP": {**zeros, "average": 0.0},
                   "MR-R1": {str(t): 0.0 for t in R1_IOU_THRESHOLDS_CG}}
      continue
    miou, r1 = compute_mr_r1(sub, gt, R1_IOU_THRESHOLDS_CG, with_miou=True)
    out[name] = {"MR-mIoU": miou, "MR-mAP": compute_mr_map(sub, gt), "MR-R1": r1}
  return out


def brief_moment_retrieval(mr: Mapping, style: str = "cg") -> list:
  """The MR entries of the "brief" block, sorted by key as the official script does."""
  brief = {
      "MR-full-mAP": mr["full"]["MR-mAP"]["average"],
      "MR-full-mAP@0.5": mr["full"]["MR-mAP"]["0.5"],
      "MR-full-mAP@0.75": mr["full"]["MR-mAP"]["0.75"],
      "MR-short-mAP": mr["short"]["MR-mAP"]["average"],
      "MR-middle-mAP": mr["middle"]["MR-mAP"]["average"],
      "MR-long-mAP": mr["long"]["MR-mAP"]["average"],
      "MR-full-R1@0.5": mr["full"]["MR-R1"]["0.5"],
      "MR-full-R1@0.7": mr["full"]["MR-R1"]["0.7"],
  }
  if style == "cg":
    brief["MR-full-R1@0.3"] = mr["full"]["MR-R1"]["0.3"]
    brief["MR-full-mIoU"] = mr["full"]["MR-mIoU"]
  return sorted(brief.items(), key=lambda kv: kv[0])
