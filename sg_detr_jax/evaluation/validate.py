"""Checks a submission against the ground truth before any metric is computed.

Every problem names the file and the qid, so a malformed prediction file never turns into a numpy
error deep inside a metric or, worse, a silently wrong number.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Mapping, Sequence


class SubmissionError(ValueError):
  """A prediction file that cannot be evaluated."""


def _is_number(x) -> bool:
  return isinstance(x, Real) and not isinstance(x, bool)


def _check_windows(windows, where: str) -> None:
  if not isinstance(windows, list) or not windows:
    raise SubmissionError(f"{where}: 'pred_relevant_windows' must be a non-empty list of "
                          f"[start, end, score], got {windows!r:.80}")
  for i, w in enumerate(windows):
    if not isinstance(w, (list, tuple)) or len(w) < 3 or not all(_is_number(v) for v in w[:3]):
      raise SubmissionError(f"{where}: window {i} must be [start, end, score] numbers, got {w!r:.80}")
    if not all(math.isfinite(v) for v in w[:3]):
      raise SubmissionError(f"{where}: window {i} has a NaN/Inf value: {w!r:.80}")
    if w[1] < w[0]:
      raise SubmissionError(f"{where}: window {i} ends before it starts: {w!r:.80}")


def _check_saliency(scores, where: str) -> None:
  if not isinstance(scores, list) or not scores:
    raise SubmissionError(f"{where}: 'pred_saliency_scores' must be a non-empty list of numbers")
  for i, s in enumerate(scores):
    if not _is_number(s) or not math.isfinite(s):
      raise SubmissionError(f"{where}: saliency score {i} is not a finite number: {s!r:.40}")


def validate_submission(submission: Sequence[Mapping], ground_truth: Sequence[Mapping], *,
                        need_windows: bool, need_saliency: bool, source: str = "<predictions>",
                        match_number: bool = True) -> None:
  """Raises SubmissionError naming the qid for any malformed or mismatched entry.

  Args:
    submission: prediction records.
    ground_truth: annotation records.
    need_windows: every record must carry valid `pred_relevant_windows`.
    need_saliency: every record must carry valid `pred_saliency_scores`.
    source: file name used in messages.
    match_number: require the qid sets to be equal (the official default).
  """
  if not submission:
    raise SubmissionError(f"{source}: no predictions")
  seen = set()
  for i, d in enumerate(submission):
    if "qid" not in d:
      raise SubmissionError(f"{source}: record {i} has no 'qid'")
    qid = d["qid"]
    where = f"{source}: qid {qid!r}"
    if qid in seen:
      raise SubmissionError(f"{where}: duplicate qid")
    seen.add(qid)
    if need_windows:
      if "pred_relevant_windows" not in d:
        raise SubmissionError(f"{where}: missing 'pred_relevant_windows'")
      _check_windows(d["pred_relevant_windows"], where)
    if need_saliency:
      if "pred_saliency_scores" not in d:
        raise SubmissionError(f"{where}: missing 'pred_saliency_scores'")
      _check_saliency(d["pred_saliency_scores"], where)
  gt_qids = [d["qid"] for d in ground_truth]
  if match_number:
    missing = [q for q in gt_qids if q not in seen]
    extra = sorted(seen - set(gt_qids), key=str)
    if missing or extra:
      raise SubmissionError(
          f"{source}: qids differ from the ground truth: {len(missing)} missing "
          f"(e.g. {missing[:5]}), {len(extra)} extra (e.g. {extra[:5]})")
