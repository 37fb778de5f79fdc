"""YouTube-Highlights and TVSum metrics (reference.md §4.11), as in Lighthouse / CG-DETR.

Both use a trapezoidal AP over a ranked 0/1 list whose precision starts at 1. TVSum keeps the top 5
ranked clips per annotator (labels binarised at the annotator's *lower* median); YouTube-HL ranks all
clips and skips videos with no positive. Results are fractions rounded to 5 decimals, as the reference
returns them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np

TVSUM_TOP_K = 5


def trapezoid_ap(ranked: np.ndarray, num_positives: int) -> float:
  """AP over a ranked binary list by the trapezoidal rule with precision starting at 1.

  Args:
    ranked: [K] 0/1 labels in ranked order.
    num_positives: the recall denominator (0 gives AP 0).
  """
  if num_positives == 0:
    return 0.0
  hits = np.cumsum(ranked)
  rec = np.r_[0.0, hits / num_positives]
  prec = np.r_[1.0, hits / np.arange(1, len(ranked) + 1)]
  return float(np.sum((rec[1:] - rec[:-1]) * (prec[:-1] + prec[1:]) / 2))


def _rank(scores: np.ndarray) -> np.ndarray:
  # torch.argsort(descending=True) leaves tie order unspecified; a stable order makes it reproducible.
  return np.argsort(-scores, kind="stable")


def tvsum_video_ap(labels: np.ndarray, scores: np.ndarray) -> float:
  """Top-5 mAP of one TVSum video, averaged over its annotators.

  Args:
    labels: [n, A] importance scores 1..5 (A = 20 annotators).
    scores: [>= n] predicted clip scores (cut to n).
  """
  n = labels.shape[0]
  order = _rank(np.asarray(scores, dtype=np.float64)[:n])
  aps = []
  for k in range(labels.shape[1]):
    column = labels[:, k]
    lower_median = np.sort(column)[(n - 1) // 2]
    top = (column > lower_median).astype(np.float64)[order][:TVSUM_TOP_K]
    aps.append(trapezoid_ap(top, int(top.sum())))
  return float(np.mean(aps))


def youtube_video_ap(labels: np.ndarray, scores: np.ndarray) -> float | None:
  """AP of one YouTube-Highlights video over all clips; None if it has no positive (skipped)."""
  y = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)[:, 0]
  if y.sum() == 0:
    return None
  ranked = y[_rank(np.asarray(scores, dtype=np.float64)[:len(y)])]
  return trapezoid_ap(ranked, int(y.sum()))


def eval_highlight_only(submission: Sequence[Mapping], ground_truth: Sequence[Mapping],
                        task: str) -> dict:
  """mAP over videos, overall and per domain.

  Args:
    submission: dicts with `qid` and `pred_saliency_scores`.
    ground_truth: dicts with `qid`, `label` and `domain`.
    task: "tvsum" or "youtube_hl".

  Returns:
    {"brief": {"mAP": m}, "domains": {domain: mAP}} with fractions rounded to 5 decimals.
  """
  scores = {d["qid"]: d["pred_saliency_scores"] for d in submission}
  per_domain = defaultdict(list)
  for gt in ground_truth:
    labels = np.asarray(gt["label"], dtype=np.float64)
    if task == "tvsum":
      ap = tvsum_video_ap(labels, np.asarray(scores[gt["qid"]]))
    elif task == "youtube_hl":
      ap = youtube_video_ap(labels, np.asarray(scores[gt["qid"]]))
    else:
      raise ValueError(f"eval_highlight_only does not handle task {task!r}")
    if ap is not None:
      per_domain[gt.get("domain", "all")].append(ap)
  all_aps = [ap for aps in per_domain.values() for ap in aps]
  return {"brief": {"mAP": round(float(np.mean(all_aps)), 5) if all_aps else 0.0},
          "domains": {k: round(float(np.mean(v)), 5) for k, v in sorted(per_domain.items())}}
