"""Checks a submission against the ground truth before any metric is computed.

Every problem names the file and the qid, so a malformed prediction file never turns into a numpy
error deep inside a metric or, worse, a silently wrong number.

A valid file (the usual case) is confirmed by whole-file checks that run in C (`map(type, ...)`, one
`sum` for finiteness, `map(operator.le, ...)` for the window order) instead of ~160k per-value Python
calls; only when one of them fails does the per-record walk run, to name the first offending qid with
the same message as always.
"""

from __future__ import annotations

import itertools
import math
import operator
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


_PLAIN_NUMBERS = frozenset((int, float))  # exact types: bool (a subclass of int) is not a number
_WINDOW_TYPES = frozenset((list, tuple))


def _all_finite_numbers(values: list) -> bool:
  """True if every value is a plain int/float and finite (a NaN/Inf anywhere makes the sum NaN/Inf)."""
  if not _PLAIN_NUMBERS.issuperset(map(type, values)):
    return False
  try:
    return math.isfinite(sum(values))
  except OverflowError:  # an int too large for a float: let the per-value checks decide
    return False


def _windows_look_valid(all_windows: list) -> bool:
  """Whole-file version of `_check_windows` for non-empty window lists (False: look closer)."""
  if not all_windows or not _WINDOW_TYPES.issuperset(map(type, all_windows)):
    return False
  if min(map(len, all_windows)) != 3 or max(map(len, all_windows)) != 3:
    return False  # longer rows are allowed, but checked one by one
  flat = list(itertools.chain.from_iterable(all_windows))
  return _all_finite_numbers(flat) and all(map(operator.le, flat[0::3], flat[1::3]))


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
  # Fast path: record structure in one cheap loop, then the values of the whole file at once.
  fast = all(isinstance(d, Mapping) and "qid" in d for d in submission)
  if fast and need_windows:
    windows = [d.get("pred_relevant_windows") for d in submission]
    fast = all(type(w) is list and w for w in windows) and _windows_look_valid(
        list(itertools.chain.from_iterable(windows)))
  if fast and need_saliency:
    scores = [d.get("pred_saliency_scores") for d in submission]
    fast = all(type(w) is list and w for w in scores) and _all_finite_numbers(
        list(itertools.chain.from_iterable(scores)))
  seen = set()
  for i, d in enumerate(submission):
    if "qid" not in d:
      raise SubmissionError(f"{source}: record {i} has no 'qid'")
    qid = d["qid"]
    where = f"{source}: qid {qid!r}"
    if qid in seen:
      raise SubmissionError(f"{where}: duplicate qid")
    seen.add(qid)
    if fast:
      continue
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
