"""Highlight-detection metrics equal to the official QVHighlights evaluator (reference.md §4.6).

HL-mAP is the per-annotator AP (3 separate columns, never aggregated), averaged over all (query,
annotator) pairs; HL-Hit1 counts the top-scored clip as a hit if any annotator rates it >= the
threshold. The AP is scikit-learn's `precision_recall_curve` AP as used by video2gif: interpolated
precision averaged over *distinct recall levels* (tie-sensitive), re-implemented here without sklearn.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from sg_detr_jax.evaluation.moment_retrieval import fmt2

# Name of each saliency threshold as it appears in the official keys.
HL_THRESHOLDS = {"Fair": 2, "Good": 3, "VeryGood": 4}
# The official evaluator hard-codes 2-second clips for the HD ground truth.
QVH_CLIP_SECONDS = 2


def binary_ap(y_true: np.ndarray, y_score: np.ndarray) -> float:
  """Interpolated AP averaged over distinct recall levels (video2gif / official HD AP).

  Args:
    y_true: [n] binary labels.
    y_score: [n] predicted scores.

  Returns:
    AP in [0, 1]; 0 if there is no positive, 1 if every entry is positive.
  """
  if np.all(y_true == 0):
    return 0.0
  if np.all(y_true == 1):
    return 1.0
  order = np.argsort(-y_score, kind="stable")
  s, y = y_score[order], y_true[order]
  # Last index of every run of equal scores = the distinct thresholds v_1 > v_2 > ... > v_m.
  last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
  tps = np.cumsum(y)[last].astype(np.float64)
  fps = (1 + last) - tps
  precision = tps / (tps + fps)
  # precision_recall_curve order: lowest threshold (full recall) first, then the (P=1, R=0) end point.
  precision = np.r_[precision[::-1], 1.0]
  recall = np.r_[(tps / tps[-1])[::-1], 0.0].astype(np.float32)
  precision = np.maximum.accumulate(precision)  # interpolate from the high-recall end
  return float(np.mean(precision[np.where(np.diff(recall))]))


def gt_saliency_matrix(gt: Mapping) -> np.ndarray:
  """Per-clip annotator scores of one QVHighlights query.

  Returns:
    [int(duration / 2), 3] scores 0..4; zeros outside `relevant_clip_ids`.
  """
  scores = np.zeros((int(gt["duration"] / QVH_CLIP_SECONDS), 3))
  scores[np.asarray(gt["relevant_clip_ids"], dtype=int)] = np.asarray(gt["saliency_scores"])
  return scores


def _fit_length(pred: np.ndarray, n: int) -> np.ndarray:
  """Truncates or zero-pads predicted clip scores to the GT clip count."""
  if len(pred) >= n:
    return pred[:n]
  return np.r_[pred, np.zeros(n - len(pred))]


def eval_highlight(submission: Sequence[Mapping], ground_truth: Sequence[Mapping]) -> dict:
  """HL-mAP and HL-Hit1 at the Fair / Good / VeryGood thresholds.

  Returns:
    {"HL-min-Fair": {"HL-mAP": x, "HL-Hit1": y}, "HL-min-Good": ..., "HL-min-VeryGood": ...}.
  """
  gt_scores = {d["qid"]: gt_saliency_matrix(d) for d in ground_truth}
  preds = [(d["qid"], np.asarray(d["pred_saliency_scores"], dtype=np.float64)) for d in submission]
  out = {}
  for name, threshold in HL_THRESHOLDS.items():
    ap = np.zeros((len(preds), 3))
    hit = np.zeros((len(preds), 3))
    for i, (qid, pred) in enumerate(preds):
      binary = (gt_scores[qid] >= threshold).astype(float)  # [n, 3]
      top = int(np.argmax(pred))
      if top < len(binary):
        hit[i] = binary[top]
      fitted = _fit_length(pred, len(binary))
      for k in range(3):
        ap[i, k] = binary_ap(binary[:, k], fitted)
    out[f"HL-min-{name}"] = {"HL-mAP": fmt2(100 * np.mean(ap)),
                             "HL-Hit1": fmt2(100 * np.mean(np.max(hit, 1)))}
  return out


def brief_highlight(hl: Mapping) -> list:
  """The HD entries of the "brief" block: Fair-mAP, Fair-Hit1, Good-mAP, ... in that order."""
  return [(f"{group}-{key.split('-')[1]}", value)
          for group, metrics in hl.items() for key, value in metrics.items()]
