"""Official-equivalent evaluation for QVHighlights, Charades-STA, TACoS, YouTube-HL and TVSum.

`evaluate(submission, ground_truth, task)` returns the metrics dict with the official structure and
rounding; `python -m sg_detr_jax.evaluation` is the command-line front end.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Sequence

# Only the numpy-free parts at package import: the metric modules (and numpy) load on the first
# `evaluate` call, so `python -m sg_detr_jax.evaluation` can set up the process before numpy loads.
from sg_detr_jax.evaluation.validate import SubmissionError, validate_submission

TASKS = ("qvhighlights", "charades_sta", "tacos", "youtube_hl", "tvsum")
MR_TASKS = ("qvhighlights", "charades_sta", "tacos")


def evaluate(submission: Sequence[Mapping], ground_truth: Sequence[Mapping],
             task: str = "qvhighlights", style: str = "cg", source: str = "<predictions>",
             match_number: bool = True) -> dict:
  """Computes the task's metrics.

  Args:
    submission: prediction records (`qid`, `pred_relevant_windows` sorted by score, and for
      QVHighlights / HD tasks `pred_saliency_scores`).
    ground_truth: annotation records of the same qids.
    task: one of TASKS.
    style: for MR tasks, "md" (the official Moment-DETR evaluator, byte-for-byte its keys) or "cg"
      (its superset with R1@0.3..0.45 and mIoU, the convention for Charades-STA / TACoS numbers).
    source: file name used in error messages.
    match_number: require the prediction and GT qid sets to be equal; if False, both are restricted
      to the shared qids (the official `match_number=False`).

  Returns:
    An ordered dict: "brief" first, then the metric groups sorted by name.
  """
  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.evaluation.highlight import brief_highlight, eval_highlight
  from sg_detr_jax.evaluation.highlight_only import eval_highlight_only
  from sg_detr_jax.evaluation.moment_retrieval import brief_moment_retrieval, eval_moment_retrieval
  # pylint: enable=g-import-not-at-top
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
  if not match_number:
    shared = {d["qid"] for d in submission} & {d["qid"] for d in ground_truth}
    submission = [d for d in submission if d["qid"] in shared]
    ground_truth = [d for d in ground_truth if d["qid"] in shared]
  if task not in MR_TASKS:
    validate_submission(submission, ground_truth, need_windows=False, need_saliency=True,
                        source=source)
    return eval_highlight_only(submission, ground_truth, task)

  # As in the official script, the first record decides which families are evaluated.
  has_hd = bool(submission) and task == "qvhighlights" and "pred_saliency_scores" in submission[0]
  validate_submission(submission, ground_truth, need_windows=True, need_saliency=has_hd,
                      source=source)
  metrics, brief = {}, OrderedDict()
  mr = eval_moment_retrieval(submission, ground_truth, style=style)
  metrics.update(mr)
  brief.update(brief_moment_retrieval(mr, style=style))
  if has_hd:
    hl = eval_highlight(submission, ground_truth)
    metrics.update(hl)
    brief.update(brief_highlight(hl))
  out = OrderedDict(brief=brief)
  out.update(sorted(metrics.items(), key=lambda kv: kv[0]))
  return out


__all__ = ["evaluate", "SubmissionError", "TASKS", "MR_TASKS"]
