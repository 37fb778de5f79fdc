"""Highlight-detection metrics equal to the official QVHighlights evaluator (reference.md §4.6).

HL-mAP is the per-annotator AP (3 separate columns, never aggregated), averaged over all (query,
annotator) pairs; HL-Hit1 counts the top-scored clip as a hit if any annotator rates it >= the
threshold. The AP is scikit-learn's `precision_recall_curve` AP as used by video2gif: interpolated
precision averaged over *distinct recall levels* (tie-sensitive), re-implemented here without sklearn.

All (query, threshold, annotator) APs are computed together (`batched_binary_ap`): one sort of each
query's scores serves its 9 label columns (3 thresholds x 3 annotators), only the positives are
visited, the per-AP mean goes through `reductions.pairwise_sum_packed` (NumPy's own summation order),
and the final means are the official NumPy calls on the same [Q, 3] layout in submission order, so
the numbers are bit-identical to the official per-query loops.
"""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import numpy as np

from sg_detr_jax.evaluation.moment_retrieval import fmt2
from sg_detr_jax.evaluation.reductions import padded_width, pairwise_sum_packed

# Name of each saliency threshold as it appears in the official keys.
HL_THRESHOLDS = {"Fair": 2, "Good": 3, "VeryGood": 4}
# The official evaluator hard-codes 2-second clips for the HD ground truth.
QVH_CLIP_SECONDS = 2
NUM_ANNOTATORS = 3


def batched_binary_ap(scores: np.ndarray, num_clips: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """`binary_ap` of many queries and label columns at once.

  Works on the positives only. With the clips sorted by score, a "run" is a set of equal scores and
  its last rank is one of scikit-learn's thresholds. The official mean runs over the recall levels,
  i.e. over the runs that hold a positive (recall is tps / P cast to float32, and distinct tps / P
  with P < 2**24 stay distinct in float32), and the interpolated precision there (the maximum over
  the runs at or after it) is attained at such a run too: between two of them the precision
  tps / (1 + rank) only falls. So each (query, column) row needs only its positive runs, listed
  from the last run to the first (the official array order), as a prefix maximum and a pairwise sum.

  Args:
    scores: [Q, L] predicted clip scores, already fitted to each query's clip count (entries at
      positions >= num_clips are ignored).
    num_clips: [Q] clips per query (<= L).
    labels: [Q, C, L] bool labels, C label columns per query (positions >= num_clips ignored).

  Returns:
    [Q, C] AP: 0 for a column without positive, 1 if every clip is positive, else the interpolated
    precision averaged over the distinct recall levels.
  """
  num_q, length = scores.shape
  num_c = labels.shape[1]
  num_rows = num_q * num_c
  ranks = np.arange(length)
  valid = ranks[None, :] < num_clips[:, None]  # [Q, L]
  # Descending scores; padding sorts last. Ties may come in any order: only run ends count.
  order = np.argsort(np.where(valid, -scores, np.inf), axis=1, kind="stable")
  ranked = np.take_along_axis(scores, order, axis=1)
  run_end = np.ones((num_q, length), dtype=bool)
  run_end[:, :-1] = np.diff(ranked, axis=1) != 0
  run_end[np.nonzero(num_clips > 0)[0], num_clips[num_clips > 0] - 1] = True
  # The last rank of the run of every rank, and the sorted rank of every clip.
  run_last = np.minimum.accumulate(np.where(run_end, ranks, length)[:, ::-1], axis=1)[:, ::-1]
  clip_rank = np.empty_like(order)
  clip_rank[np.arange(num_q)[:, None], order] = ranks
  # Positives, grouped by (row = query * C + column, last rank of their run), rows and runs ascending.
  q, c, clip = np.nonzero(labels & valid[:, None, :])
  per_run = np.bincount((q * num_c + c) * length + run_last[q, clip_rank[q, clip]],
                        minlength=num_rows * length)
  key = np.flatnonzero(per_run)
  row, last_rank = np.divmod(key, length)
  levels = np.bincount(row, minlength=num_rows)  # recall levels per row
  cum = np.concatenate([[0], np.cumsum(per_run[key])])
  first = np.cumsum(levels) - levels  # index of each row's first level
  tps = cum[1:] - np.repeat(cum[first], levels)  # true positives down to each level's run
  positives = cum[first + levels] - cum[first]  # [R]
  # scikit-learn: precision = tps / (tps + fps) with fps = 1 + rank - tps, i.e. tps / (1 + rank)
  # exactly (small integers).
  precision = tps / (1 + last_rank)
  # Last run first (the official curve order), left-aligned, zero-padded; then the running maximum.
  slot = np.repeat(first + levels - 1, levels) - np.arange(len(key))
  packed = np.zeros((num_rows, padded_width(int(levels.max(initial=0)))))
  packed[row, slot] = precision
  sums = pairwise_sum_packed(np.maximum.accumulate(packed, axis=1), levels)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean = sums / levels  # np.mean divides the sum by the count
  ap = np.where(positives == 0, 0.0, np.where(positives == np.repeat(num_clips, num_c), 1.0, mean))
  return ap.reshape(num_q, num_c)


def binary_ap(y_true: np.ndarray, y_score: np.ndarray) -> float:
  """Interpolated AP averaged over distinct recall levels (video2gif / official HD AP).

  Args:
    y_true: [n] binary labels.
    y_score: [n] predicted scores.

  Returns:
    AP in [0, 1]; 0 if there is no positive, 1 if every entry is positive.
  """
  y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
  y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
  n = len(y_true)
  scores = np.zeros((1, max(1, n)))
  scores[0, :n] = y_score[:n]
  labels = np.zeros((1, 1, max(1, n)), dtype=bool)
  labels[0, 0, :n] = y_true == 1
  return float(batched_binary_ap(scores, np.array([n]), labels)[0, 0])


def gt_saliency_matrix(gt: Mapping) -> np.ndarray:
  """Per-clip annotator scores of one QVHighlights query.

  Returns:
    [int(duration / 2), 3] scores 0..4; zeros outside `relevant_clip_ids`.
  """
  scores = np.zeros((int(gt["duration"] / QVH_CLIP_SECONDS), 3))
  scores[np.asarray(gt["relevant_clip_ids"], dtype=int)] = np.asarray(gt["saliency_scores"])
  return scores


def _gt_saliency_matrices(gts: Sequence[Mapping], qids: Sequence) -> tuple[np.ndarray, np.ndarray]:
  """`gt_saliency_matrix` of every query, transposed and zero-padded: ([Q, 3, L], [Q] clip counts)."""
  num_clips = np.array([int(d["duration"] / QVH_CLIP_SECONDS) for d in gts], dtype=np.intp)
  length = max(1, int(num_clips.max(initial=0)))
  out = np.zeros((len(gts), NUM_ANNOTATORS, length))
  counts = np.fromiter((len(d["relevant_clip_ids"]) for d in gts), dtype=np.intp, count=len(gts))
  if counts.sum():
    ids = np.fromiter(itertools.chain.from_iterable(d["relevant_clip_ids"] for d in gts),
                      dtype=np.intp, count=int(counts.sum()))
    rows_of_scores = list(itertools.chain.from_iterable(d["saliency_scores"] for d in gts))
    if len(rows_of_scores) != len(ids) or set(map(len, rows_of_scores)) != {NUM_ANNOTATORS}:
      raise ValueError(f"ground truth: every relevant clip needs {NUM_ANNOTATORS} saliency scores")
    values = np.fromiter(itertools.chain.from_iterable(rows_of_scores), dtype=np.float64,
                         count=len(ids) * NUM_ANNOTATORS).reshape(len(ids), NUM_ANNOTATORS)
    rows = np.repeat(np.arange(len(gts)), counts)
    n = num_clips[rows]
    bad = (ids < -n) | (ids >= n)
    if np.any(bad):  # numpy's IndexError in the official per-query assignment
      raise ValueError(f"qid {qids[rows[np.argmax(bad)]]!r}: relevant_clip_ids out of range for "
                       f"its duration")
    ids = np.where(ids < 0, ids + n, ids)  # negative ids index from the end, as in numpy
    out[rows, :, ids] = values  # repeated ids: the last one wins, as in the per-query assignment
  return out, num_clips


def _padded_scores(lists: Sequence[Sequence[float]], pad: float) -> tuple[np.ndarray, np.ndarray]:
  """Ragged score lists -> ([Q, max length] padded with `pad`, [Q] lengths)."""
  counts = np.fromiter(map(len, lists), dtype=np.intp, count=len(lists))
  out = np.full((len(lists), max(1, int(counts.max(initial=0)))), pad, dtype=np.float64)
  flat = np.array(list(itertools.chain.from_iterable(lists)), dtype=np.float64)
  rows = np.repeat(np.arange(len(lists)), counts)
  out[rows, np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)] = flat
  return out, counts


def eval_highlight(submission: Sequence[Mapping], ground_truth: Sequence[Mapping]) -> dict:
  """HL-mAP and HL-Hit1 at the Fair / Good / VeryGood thresholds.

  Returns:
    {"HL-min-Fair": {"HL-mAP": x, "HL-Hit1": y}, "HL-min-Good": ..., "HL-min-VeryGood": ...}.
  """
  gt_by_qid = {d["qid"]: d for d in ground_truth}
  qids = [d["qid"] for d in submission]
  missing = [q for q in qids if q not in gt_by_qid]
  if missing:
    raise ValueError(f"HD evaluation: {len(missing)} predicted qids without ground truth "
                     f"(e.g. {missing[:5]})")
  gt_scores, num_clips = _gt_saliency_matrices([gt_by_qid[q] for q in qids], qids)
  num_q, _, length = gt_scores.shape
  pred, pred_len = _padded_scores([d["pred_saliency_scores"] for d in submission], -np.inf)
  # Hit@1: first maximum over the whole prediction list (padding is -inf).
  top = np.argmax(pred, axis=1)
  top_in_gt = np.nonzero(top < num_clips)[0]
  # AP: scores truncated or zero-padded to the GT clip count.
  fitted = np.zeros((num_q, length))
  width = min(length, pred.shape[1])
  take = np.arange(width)[None, :] < np.minimum(pred_len, num_clips)[:, None]
  fitted[:, :width] = np.where(take, pred[:, :width], 0.0)
  # [Q, 3 thresholds x 3 annotators, L] binary labels (zero beyond each query's clips).
  binary = np.concatenate([gt_scores >= t for t in HL_THRESHOLDS.values()], axis=1)
  ap = batched_binary_ap(fitted, num_clips, binary)  # [Q, 9]
  out = {}
  for i, name in enumerate(HL_THRESHOLDS):
    columns = slice(i * NUM_ANNOTATORS, (i + 1) * NUM_ANNOTATORS)
    hit = np.zeros((num_q, NUM_ANNOTATORS))
    hit[top_in_gt] = binary[top_in_gt, columns, top[top_in_gt]]
    # The official [Q, 3] arrays (C order, submission order) and their official reductions.
    out[f"HL-min-{name}"] = {"HL-mAP": fmt2(100 * np.mean(np.ascontiguousarray(ap[:, columns]))),
                             "HL-Hit1": fmt2(100 * np.mean(np.max(hit, 1)))}
  return out


def brief_highlight(hl: Mapping) -> list:
  """The HD entries of the "brief" block: Fair-mAP, Fair-Hit1, Good-mAP, ... in that order."""
  return [(f"{group}-{key.split('-')[1]}", value)
          for group, metrics in hl.items() for key, value in metrics.items()]
