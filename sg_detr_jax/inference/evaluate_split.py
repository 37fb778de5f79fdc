"""Predict a split, write the official-format prediction files and, with labels, the metrics."""

from __future__ import annotations

import os

import jax

from sg_detr_jax import jsonl
from sg_detr_jax.data.pipeline import eval_view
from sg_detr_jax.evaluation import evaluate
from sg_detr_jax.inference.predict import predict_split


def gt_file(config, split: str) -> str:
  """The annotation jsonl with labels for `split`, or "" (predictions only)."""
  files = config.data.gt_files
  return files[split] if split in files else ""


def evaluate_split(predict_step, params, config, split: str, out_dir: str | None = None,
                   progress=None, head: str | None = None) -> dict | None:
  """Writes `<out_dir>/<split>_preds.jsonl` (main head), `<split>_preds_detr.jsonl` and, when the
  split has a ground-truth file, `<split>_metrics.json` = {"fused": ..., "detr": ...}.

  The lists follow `config.postprocess` (official convention by default: the DETR file keeps the
  official class-probability row order, see inference/postprocess.py).

  Several processes: each one predicts (or, with a mesh-wide `predict_step`, helps predict) the
  whole split and computes the same records and metrics (every process needs the score, e.g. to
  rank checkpoints); only process 0 writes the files.

  Args:
    head: whose metrics are returned, "fused" | "detr"; None = the main head (fused unless
      `postprocess.fused` is False). Training passes `train.best_head`.

  Returns:
    The metrics of `head`, or None when the split has no ground truth.
  """
  if head not in (None, "fused", "detr"):
    raise ValueError(f"head must be 'fused' or 'detr', not {head!r}")
  records, _ = predict_split(predict_step, params, config, split, progress)
  main = "fused" if config.postprocess.fused else "detr"
  if out_dir and jax.process_index() != 0:
    out_dir = None  # process 0 writes
  if out_dir:
    os.makedirs(out_dir, exist_ok=True)
    jsonl.write_jsonl(os.path.join(out_dir, f"{split}_preds.jsonl"), records[main])
    jsonl.write_jsonl(os.path.join(out_dir, f"{split}_preds_detr.jsonl"), records["detr"])
  path = gt_file(config, split)
  if not path:
    return None
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config.data.gt_files.{split} = {path!r} does not exist")
  gt = jsonl.read_jsonl(path)
  task = eval_view(config.data).dataset
  # QVHighlights: the official Moment-DETR keys; other tasks: the CG-DETR superset.
  style = "md" if task == "qvhighlights" else "cg"
  metrics = {h: evaluate(records[h], gt, task=task, style=style,
                         source=f"{split} predictions ({h})") for h in ("fused", "detr")}
  if out_dir:
    jsonl.write_json(os.path.join(out_dir, f"{split}_metrics.json"), metrics)
  return metrics[head or main]
