"""Numerical parity between this model and a PyTorch SG-DETR, on the same inputs and weights.

  python -m sg_detr_jax.porting.parity --workdir W --inputs inputs.npz --reference outputs.npz \
      [--checkpoint best] [--atol 1e-4]

`inputs.npz` holds the model inputs in our batch layout (video [B, Lv, Dv+2], video_mask [B, Lv],
text [B, Lt, Dt], text_mask [B, Lt]); `outputs.npz` the PyTorch forward's outputs under the names of
`flat_outputs` (saliency_local, saliency_global, pred_logits.<layer>, pred_spans.<layer>,
pred_iou.<layer>, atss_logits, atss_deltas, atss_ctr, ...). Produce it from the official model with
the same weights (`launch.export_torch` or the converter's source checkpoint) and the same inputs.
The report gives, per output, the max absolute and max relative difference; `metric_difference`
compares two prediction files on the official metrics.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

LAYERED = ("pred_logits", "pred_spans", "pred_iou")


def flat_outputs(out) -> dict[str, np.ndarray]:
  """Our eval outputs (`Predictions`) with per-decoder-layer stacks split into `<name>.<layer>`
  entries."""
  from sg_detr_jax.models import outputs  # pylint: disable=g-import-not-at-top
  flat = {}
  for k, v in outputs.flatten(out).items():
    v = np.asarray(v)
    if k in LAYERED:
      for i in range(v.shape[0]):
        flat[f"{k}.{i}"] = v[i]
    else:
      flat[k] = v
  return flat


def compare(ours: dict, theirs: dict) -> dict[str, dict]:
  """{name: {max_abs, max_rel, shape}} over the names both sides have; shapes must agree."""
  report = {}
  for name in sorted(set(ours) & set(theirs)):
    a, b = np.asarray(ours[name], np.float64), np.asarray(theirs[name], np.float64)
    if a.shape != b.shape:
      raise ValueError(f"output {name!r}: ours has shape {a.shape}, the reference {b.shape}")
    diff = np.abs(a - b)
    report[name] = {"max_abs": float(diff.max(initial=0.0)),
                    "max_rel": float((diff / np.maximum(np.abs(b), 1e-6)).max(initial=0.0)),
                    "shape": list(a.shape)}
  return report


def run_ours(predict_step, params, inputs: dict) -> dict[str, np.ndarray]:
  """Our jitted eval forward on `inputs`, flattened as in `flat_outputs`."""
  import jax  # pylint: disable=g-import-not-at-top
  batch = {k: np.asarray(inputs[k]) for k in ("video", "video_mask", "text", "text_mask")}
  batch["video_mask"] = batch["video_mask"].astype(bool)
  batch["text_mask"] = batch["text_mask"].astype(bool)
  return flat_outputs(jax.device_get(predict_step(params, batch)))


def metric_difference(preds_a: str, preds_b: str, gt: str) -> dict[str, float]:
  """Official metrics of prediction file a minus those of b, on the annotations `gt`."""
  from sg_detr_jax import jsonl  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  gts = jsonl.read_jsonl(gt)
  a = evaluate(jsonl.read_jsonl(preds_a), gts)["brief"]
  b = evaluate(jsonl.read_jsonl(preds_b), gts)["brief"]
  return {k: float(a[k]) - float(b[k]) for k in a if k in b}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--workdir", required=True)
  p.add_argument("--inputs", required=True)
  p.add_argument("--reference", required=True)
  p.add_argument("--checkpoint", default="best")
  p.add_argument("--atol", type=float, default=1e-4)
  args = p.parse_args(argv)
  from sg_detr_jax.inference.predictor import Predictor  # pylint: disable=g-import-not-at-top
  predictor = Predictor.from_workdir(args.workdir, args.checkpoint)
  with np.load(args.inputs) as f:
    inputs = dict(f)
  with np.load(args.reference) as f:
    reference = dict(f)
  report = compare(run_ours(predictor.predict_step, predictor.params, inputs), reference)
  print(json.dumps(report, indent=1))
  worst = max((r["max_abs"] for r in report.values()), default=0.0)
  print(f"{len(report)} outputs compared; worst max-abs difference {worst:.3g} "
        f"({'within' if worst <= args.atol else 'ABOVE'} atol {args.atol})")
  return 0 if worst <= args.atol else 1


if __name__ == "__main__":
  sys.exit(main())
