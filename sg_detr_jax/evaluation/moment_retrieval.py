"""Moment-retrieval metrics equal to the official QVHighlights evaluator.

Implements `reference.md` §4.2-4.5: R1@IoU (top-1 window vs the max-IoU ground-truth window), mAP@IoU
(ActivityNet all-point interpolation over the first 10 predictions, stably re-sorted by score), mIoU,
and the length buckets.

All queries are evaluated at once: the windows are packed into padded [Q, P, 2] / [Q, G, 2] arrays once,
the cross IoUs are one [Q, P, G] array, the greedy TP/FP matching loops over the <= 10 prediction ranks
(not over queries), and a length bucket is a mask over the GT windows. The results stay bit-identical to
the official per-query loops: every element-wise step uses the same formula, the per-query AP sums go
through `reductions.pairwise_sum_rows` (NumPy's summation order, see there), and the final means over
queries are the same NumPy calls on arrays of the same layout and order (submission order).
"""

from __future__ import annotations

import itertools
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from sg_detr_jax.evaluation.reductions import pairwise_sum_rows

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

  The package's numpy interval IoU: computed in the inputs' dtype, NaN where the union is 0 (0/0
  never passes a `>` threshold). Post-processing uses it too; its batched NMS and fusion loops use
  `postprocess._iou_one_to_many`, the same operations on lengths computed once per batch.

  Args:
    pred: [..., P, 2] (start, end).
    gt: [..., G, 2] (start, end); leading dimensions broadcast against pred's.

  Returns:
    [..., P, G] IoU; union is the sum of the lengths minus the intersection (reference.md §4.2).
  """
  ps, pe = pred[..., :, None, 0], pred[..., :, None, 1]
  gs, ge = gt[..., None, :, 0], gt[..., None, :, 1]
  inter = np.maximum(0.0, np.minimum(pe, ge) - np.maximum(ps, gs))
  union = (pe - ps) + (ge - gs) - inter
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
  """ActivityNet all-point interpolated AP of every row (bit-identical to the official 1-D function).

  Args:
    precision: [R, K] precision after each of K ranked predictions (one row per query and threshold).
    recall: [R, K] recall after each ranked prediction.

  Returns:
    [R] AP. Prepends (rec 0, prec 0) and appends (rec 1, prec 0); precision is replaced by its running
    maximum from the end; AP sums (rec_k - rec_{k-1}) * prec_k where recall changes, in NumPy's
    summation order.
  """
  num_r = precision.shape[0]
  mprec = np.hstack([np.zeros((num_r, 1)), precision, np.zeros((num_r, 1))])
  mrec = np.hstack([np.zeros((num_r, 1)), recall, np.ones((num_r, 1))])
  mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
  changed = mrec[:, 1:] != mrec[:, :-1]
  terms = (mrec[:, 1:] - mrec[:, :-1]) * mprec[:, 1:]
  return pairwise_sum_rows(terms, changed)[0]


def _greedy_tp(iou: np.ndarray, num_pred: np.ndarray, keep: np.ndarray,
               thr: np.ndarray) -> np.ndarray:
  """[Q, T, P] TP flags of the official greedy matching (reference.md §4.3 step 3)."""
  num_q, num_p, num_g = iou.shape
  num_t = len(thr)
  # GT windows in descending IoU order; exact ties: higher index first (stable ascending, reversed),
  # excluded windows last. (The official default argsort is not guaranteed stable; reference.md §4.3.)
  # `rank[q, p, g]` is GT g's position in that order, so "the first unused GT in that order" is an
  # argmin over the unused windows' ranks (no per-rank gather of the used flags).
  gt_order = np.argsort(np.where(keep[:, None, :], iou, -np.inf), axis=2, kind="stable")[:, :, ::-1]
  rank = np.empty_like(gt_order)
  np.put_along_axis(rank, gt_order, np.arange(num_g), axis=2)
  used = np.repeat(~keep[:, None, :], num_t, axis=1)  # [Q, T, G]; excluded windows are never free
  tp = np.zeros((num_q, num_t, num_p))
  q_index, t_index = np.arange(num_q)[:, None], np.arange(num_t)[None, :]
  # The matching is greedy in rank order (a TP locks its GT for the later ranks), so it loops over
  # the <= 10 ranks, with all queries and thresholds handled together.
  for p in range(num_p):
    free_rank = np.where(used, num_g, rank[:, None, p, :])  # [Q, T, G]; num_g = not free
    first = np.argmin(free_rank, axis=2)  # [Q, T] the first unused GT in that order
    has_free = free_rank[q_index, t_index, first] < num_g
    hit = has_free & (iou[q_index, p, first] >= thr) & (p < num_pred)[:, None]
    tp[:, :, p] = hit
    used[q_index, t_index, first] |= hit
  return tp


def _batched_ap(iou: np.ndarray, num_pred: np.ndarray, keep: np.ndarray,
                thresholds: Sequence[float]) -> np.ndarray:
  """AP at every threshold of many queries at once (reference.md §4.3 steps 2-5).

  Args:
    iou: [Q, P, G] cross IoU of each query's predictions (already in rank order) with its GT windows.
    num_pred: [Q] real predictions per query (>= 1); ranks beyond are padding.
    keep: [Q, G] the GT windows that take part (False: padding, or outside the length bucket).
    thresholds: T IoU thresholds.

  Returns:
    [Q, T] AP values.
  """
  thr = np.asarray(thresholds, dtype=np.float64)
  num_q, num_p, num_g = iou.shape
  num_t = len(thr)
  valid = (np.arange(num_p)[None, :] < num_pred[:, None])[:, None, :]  # [Q, 1, P]
  if num_g == 1:
    # One GT window (2/3 of QVHighlights queries): the first prediction that reaches the threshold
    # takes it, every other one is a FP. The same rule as the loop below, without the loop.
    reach = (iou[:, None, :, 0] >= thr[None, :, None]) & valid & keep[:, :, None]  # [Q, T, P]
    tp = (reach & (np.cumsum(reach, axis=2) == 1)).astype(np.float64)
  else:
    tp = _greedy_tp(iou, num_pred, keep, thr)
  fp = np.where(valid, 1.0 - tp, 0.0)
  tp_cum = np.cumsum(tp, axis=2)
  fp_cum = np.cumsum(fp, axis=2)
  num_gt = keep.sum(1).astype(np.float64)[:, None, None]
  with np.errstate(invalid="ignore", divide="ignore"):  # 0 GT: NaN AP, as the official code
    recall = tp_cum / num_gt
    precision = tp_cum / (tp_cum + fp_cum)
  # Padded ranks repeat the appended end point (rec 1, prec 0): recall never changes there and the
  # running maximum is unaffected, so each row sums exactly the official terms in the official order.
  recall = np.where(valid, recall, 1.0)
  precision = np.where(valid, precision, 0.0)
  return interpolated_ap(precision.reshape(num_q * num_t, num_p),
                         recall.reshape(num_q * num_t, num_p)).reshape(num_q, num_t)


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
  pred_windows = np.asarray(pred_windows, dtype=np.float64).reshape(-1, 2)
  gt_windows = np.asarray(gt_windows, dtype=np.float64).reshape(-1, 2)
  if len(pred_windows) == 0:
    return np.zeros(len(thresholds))
  order = np.argsort(-np.asarray(pred_scores, dtype=np.float64), kind="stable")
  keep = np.ones((1, max(1, len(gt_windows))), dtype=bool)
  if len(gt_windows) == 0:  # one excluded dummy column keeps the arrays non-empty
    keep[:] = False
    gt_windows = np.zeros((1, 2))
  iou = cross_iou(pred_windows[order], gt_windows)[None]
  return _batched_ap(iou, np.array([len(pred_windows)]), keep, thresholds)[0]


class PackedMR(NamedTuple):
  """The MR inputs of all queries as padded arrays, in submission order."""
  qids: list
  num_pred: np.ndarray  # [Q] predictions used for mAP (the first <= 10)
  top1: np.ndarray  # [Q, 2] the first predicted window as given (NaN if none)
  gt: np.ndarray  # [Q, G, 2] GT windows (zeros as padding)
  gt_valid: np.ndarray  # [Q, G] real GT windows
  gt_length: np.ndarray  # [Q, G] end - start
  iou: np.ndarray  # [Q, P, G] cross IoU of the score-ranked predictions with the GT windows
  top1_iou: np.ndarray  # [Q, G] cross IoU of `top1` with the GT windows


def _pad(lists: Sequence[Sequence[Sequence[float]]], width: int, pad: float):
  """Ragged lists of windows -> ([Q, N, width] padded with `pad`, counts [Q])."""
  counts = np.fromiter(map(len, lists), dtype=np.intp, count=len(lists))
  n = max(1, int(counts.max(initial=0)))
  windows = list(itertools.chain.from_iterable(lists))
  if windows and min(map(len, windows)) == width == max(map(len, windows)):
    # The usual case, without a Python-level slice per window (2x faster).
    flat = np.fromiter(itertools.chain.from_iterable(windows), dtype=np.float64,
                       count=width * len(windows)).reshape(-1, width)
  else:
    flat = np.array([w[:width] for w in windows], dtype=np.float64).reshape(-1, width)
  out = np.full((len(lists), n, width), pad, dtype=np.float64)
  rows = np.repeat(np.arange(len(lists)), counts)
  out[rows, np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)] = flat
  return out, counts


def pack_moment_retrieval(submission: Sequence[Mapping], ground_truth: Sequence[Mapping]) -> PackedMR:
  """Packs predictions and GT windows once for all metrics and length buckets.

  Raises:
    ValueError: if the submission and GT qid sets differ (the official code fails on it as well).
  """
  gt_by_qid = {d["qid"]: d["relevant_windows"] for d in ground_truth}
  qids = [d["qid"] for d in submission]
  missing = [q for q in qids if q not in gt_by_qid]
  if missing or len(gt_by_qid) != len(qids) or len(set(qids)) != len(qids):
    extra = sorted(set(gt_by_qid) - set(qids), key=str)
    raise ValueError(f"MR evaluation needs the same, unique qids in predictions and ground truth: "
                     f"{len(missing)} without GT (e.g. {missing[:5]}), {len(extra)} without "
                     f"predictions (e.g. {extra[:5]}), {len(qids) - len(set(qids))} duplicates")
  pred, num_pred = _pad([d["pred_relevant_windows"][:MAX_PRED_WINDOWS] for d in submission], 3, 0.0)
  top1 = np.where((num_pred > 0)[:, None], pred[:, 0, :2], np.nan)
  # Stable sort by descending score, as the official `list.sort(key=-score)`; padding goes last.
  real = np.arange(pred.shape[1])[None, :] < num_pred[:, None]
  order = np.argsort(np.where(real, -pred[:, :, 2], np.inf), axis=1, kind="stable")
  ranked = np.take_along_axis(pred[:, :, :2], order[..., None], axis=1)
  gt, num_gt = _pad([gt_by_qid[q] for q in qids], 2, 0.0)
  gt_valid = np.arange(gt.shape[1])[None, :] < num_gt[:, None]
  # IoUs of the real (query, GT window) pairs only: the GT axis is padded to the longest list (25 on
  # QVHighlights val) while most queries have 1 window. Padded entries stay 0 and are never used.
  q, g = np.nonzero(gt_valid)
  iou = np.zeros(ranked.shape[:2] + gt.shape[1:2])
  iou[q, :, g] = cross_iou(ranked[q], gt[q, g][:, None, :])[..., 0]
  return PackedMR(qids=qids, num_pred=num_pred, top1=top1, gt=gt, gt_valid=gt_valid,
                  gt_length=gt[..., 1] - gt[..., 0], iou=iou,
                  top1_iou=cross_iou(top1[:, None, :], gt)[:, 0, :])


def _bucket(packed: PackedMR, length_range) -> tuple[np.ndarray, np.ndarray]:
  """(query rows in the bucket, [Q, G] GT windows kept) for a (lo, hi] length range (§4.5).

  (0, 150) keeps everything, like the official code (so windows longer than 150 s count in "full").
  """
  lo, hi = length_range
  keep = packed.gt_valid
  if not (lo == 0 and hi == 150):
    keep = keep & (lo < packed.gt_length) & (packed.gt_length <= hi)
    return np.nonzero(keep.any(1))[0], keep
  return np.arange(len(packed.qids)), keep


def _map_rows(packed: PackedMR, rows: np.ndarray, keep: np.ndarray,
              thresholds: Sequence[float]) -> np.ndarray:
  """[len(rows), T] AP of the given queries, with `keep` [len(rows), G] their GT windows taking part.

  The rows may come from several length buckets at once (a query can appear in several, each time
  with its own `keep`): one pass for all buckets costs little more than one for the largest.
  """
  num_pred = packed.num_pred[rows]
  # Most queries have 1 or 2 GT windows, a few up to 25: move each row's kept windows to the front
  # (in their order, which is all the tie rule looks at) and match groups of rows of similar GT
  # counts on arrays only as wide as they need.
  columns = np.argsort(~keep, axis=1, kind="stable")
  keep = np.take_along_axis(keep, columns, axis=1)
  iou = np.take_along_axis(packed.iou[rows], columns[:, None, :], axis=2)
  width = 2 ** np.ceil(np.log2(np.maximum(keep.sum(1), 1))).astype(int)
  ap = np.empty((len(rows), len(thresholds)))
  for w in sorted(set(width.tolist())):  # (np.unique would import numpy.ma: +25 ms)
    group = width == w
    ap[group] = _batched_ap(iou[group, :, :w], num_pred[group], keep[group, :w], thresholds)
  return ap


def _map_of_buckets(packed: PackedMR, buckets: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    thresholds: Sequence[float]) -> dict:
  """{bucket name: [Q', T] AP} of the bucket's queries with predictions, in submission order.

  Queries without any prediction are excluded from the mean, as officially.
  """
  rows = {name: r[packed.num_pred[r] > 0] for name, (r, _) in buckets.items()}
  all_rows = np.concatenate(list(rows.values()))
  all_keep = np.concatenate([keep[rows[name]] for name, (_, keep) in buckets.items()])
  ap = _map_rows(packed, all_rows, all_keep, thresholds)
  bounds = np.cumsum([len(r) for r in rows.values()])[:-1]
  return dict(zip(rows, np.split(ap, bounds)))


def _format_map(ap_array: np.ndarray, thresholds: Sequence[float]) -> dict:
  ap_thds = ap_array.mean(0)  # the official reduction, on the same [Q, T] layout and order
  result = {str(t): v for t, v in zip(thresholds, ap_thds)}
  result["average"] = np.mean(ap_thds)
  return {k: fmt2(100 * v) for k, v in result.items()}


def _top1_rows(packed: PackedMR, rows: np.ndarray, keep: np.ndarray) -> np.ndarray:
  """Paired IoU of each query's first window with its max-IoU kept GT window (§4.4), [Q']."""
  no_pred = rows[packed.num_pred[rows] == 0]
  no_gt = rows[~keep[rows].any(1)]
  if len(no_pred) or len(no_gt):
    bad = no_pred if len(no_pred) else no_gt
    what = "no predicted window" if len(no_pred) else "no ground-truth window"
    raise ValueError(f"R1 needs a window on both sides: qid {packed.qids[bad[0]]!r} has {what}")
  key = np.where(keep[rows], packed.top1_iou[rows], -np.inf)
  chosen = np.argmax(key, axis=1)  # first maximum, as the official argmax over the kept windows
  return paired_iou(packed.top1[rows], packed.gt[rows, chosen])


def _format_r1(ious: np.ndarray, thresholds: Sequence[float]) -> dict:
  return {str(t): fmt2(np.mean(ious >= t) * 100) for t in thresholds}


def compute_mr_map(submission: Sequence[Mapping], ground_truth: Sequence[Mapping],
                   thresholds: Sequence[float] = MAP_IOU_THRESHOLDS) -> dict:
  """mAP@IoU over queries, in submission order, plus "average" (reference.md §4.3).

  Queries without any predicted window are excluded, as in the reference.
  """
  packed = pack_moment_retrieval(submission, ground_truth)
  full = {"full": _bucket(packed, LENGTH_RANGES["full"])}
  return _format_map(_map_of_buckets(packed, full, thresholds)["full"], thresholds)


def top1_ious(submission: Sequence[Mapping], ground_truth: Sequence[Mapping]) -> np.ndarray:
  """IoU of each query's first predicted window with its max-IoU ground-truth window (§4.4).

  Returns:
    [Q] paired IoU, in submission order.
  """
  packed = pack_moment_retrieval(submission, ground_truth)
  rows, keep = _bucket(packed, LENGTH_RANGES["full"])
  return _top1_rows(packed, rows, keep)


def compute_mr_r1(submission, ground_truth, thresholds=MAP_IOU_THRESHOLDS, with_miou=False):
  """R1@IoU (share of queries whose top-1 window reaches the threshold) and optionally mIoU."""
  ious = top1_ious(submission, ground_truth)
  out = _format_r1(ious, thresholds)
  if with_miou:
    return fmt2(np.mean(ious) * 100), out
  return out


def filter_by_length(submission, ground_truth, length_range):
  """Keeps GT windows with lo < length <= hi, the queries that still have one, and their predictions.

  (0, 150) returns the data unfiltered, like the official code (so windows longer than 150 s count in
  "full"). `eval_moment_retrieval` applies the same rule as a mask instead of copying records.
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
    ground_truth: annotation dicts with `relevant_windows` (the same qids).
    style: "md" = the official Moment-DETR evaluator (R1 at 0.5..0.95); "cg" = CG-DETR's superset
      (adds R1@0.3..0.45 and "MR-mIoU" first in each group; empty buckets give zeros).

  Returns:
    {range_name: {"MR-mAP": {...}, "MR-R1": {...}}} (plus "MR-mIoU" for "cg").
  """
  if style not in ("md", "cg"):
    raise ValueError(f"unknown evaluation style {style!r}; expected 'md' or 'cg'")
  packed = pack_moment_retrieval(submission, ground_truth)
  buckets = {name: _bucket(packed, length_range) for name, length_range in LENGTH_RANGES.items()}
  ap = _map_of_buckets(packed, buckets, MAP_IOU_THRESHOLDS)
  out = {}
  for name, (rows, keep) in buckets.items():
    if len(rows) == 0 and style == "md":
      raise ValueError(f"length bucket {name!r} has no ground-truth window: the official Moment-DETR "
                       f"evaluator fails on it; use style 'cg' (zeros for empty buckets)")
    if len(rows) == 0:  # CG's guard: an empty bucket reports zeros and no mIoU.
      zeros = {str(t): 0.0 for t in MAP_IOU_THRESHOLDS}
      out[name] = {"MR-mAP": {**zeros, "average": 0.0},
                   "MR-R1": {str(t): 0.0 for t in R1_IOU_THRESHOLDS_CG}}
      continue
    mr_map = _format_map(ap[name], MAP_IOU_THRESHOLDS)
    ious = _top1_rows(packed, rows, keep)
    if style == "md":
      out[name] = {"MR-mAP": mr_map, "MR-R1": _format_r1(ious, MAP_IOU_THRESHOLDS)}
    else:
      out[name] = {"MR-mIoU": fmt2(np.mean(ious) * 100), "MR-mAP": mr_map,
                   "MR-R1": _format_r1(ious, R1_IOU_THRESHOLDS_CG)}
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
