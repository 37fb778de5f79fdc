"""Draw predicted saliency and windows against the ground truth, one PNG per query.

  python -m launch.visualize --workdir W --qids 1001 1002 [--split val] [--head fused|detr] \
      [--gt ANNOTATIONS.jsonl] [--top-k 3] [--out DIR]

Reads the predictions `launch.evaluate` wrote (W/eval/<split>_preds.jsonl, or _preds_detr.jsonl for
--head detr) and the split's annotations (default: gt_files.<split> of W/config.json). Each figure
shows the predicted clip scores (min-max scaled), the annotators' mean saliency (0..4 scaled to
0..1) where the dataset has it, the ground-truth windows (shaded) and the top-k predicted windows
(bars, labelled with their score). Files go to W/eval/figures/<split>_<qid>.png by default.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def _scaled(x: np.ndarray) -> np.ndarray:
  lo, hi = float(np.min(x)), float(np.max(x))
  return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def draw(pred: dict, gt: dict | None, clip_len: float, path: str, top_k: int = 3) -> str:
  """Writes one figure for a prediction record (and its annotation, if any); returns the path."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")  # files only, no display
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(11, 3.2))
  sal = np.asarray(pred.get("pred_saliency_scores") or [], np.float64)
  if len(sal):
    t = (np.arange(len(sal)) + 0.5) * clip_len
    ax.plot(t, _scaled(sal), color="tab:blue", lw=1.5, label="predicted saliency (scaled)")
  if gt is not None:
    for i, (st, ed) in enumerate(gt.get("relevant_windows") or []):
      ax.axvspan(st, ed, color="tab:green", alpha=0.2, label="ground-truth window" if i == 0 else None)
    if gt.get("saliency_scores") and gt.get("relevant_clip_ids"):
      ids = np.asarray(gt["relevant_clip_ids"])
      mean = np.asarray(gt["saliency_scores"], np.float64).mean(axis=1) / 4.0
      ax.plot((ids + 0.5) * clip_len, mean, "o", ms=3, color="tab:green",
              label="annotated saliency (/4)")
  for i, (st, ed, score) in enumerate((pred.get("pred_relevant_windows") or [])[:top_k]):
    y = -0.08 - 0.08 * i
    ax.plot([st, ed], [y, y], lw=4, color="tab:red", solid_capstyle="butt",
            label="predicted windows" if i == 0 else None)
    ax.text(ed, y, f" {score:.2f}", va="center", fontsize=7)
  duration = float((gt or {}).get("duration") or (len(sal) * clip_len) or 1.0)
  ax.set_xlim(0, duration)
  ax.set_ylim(-0.1 - 0.08 * top_k, 1.1)
  ax.set_xlabel("time (s)")
  ax.set_title(f"qid {pred['qid']}: {pred.get('query', '')}", fontsize=9)
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--workdir", required=True)
  p.add_argument("--qids", nargs="+", required=True)
  p.add_argument("--split", default="val")
  p.add_argument("--head", choices=("fused", "detr"), default="fused")
  p.add_argument("--gt", default=None, help="annotation jsonl (default: from the workdir config)")
  p.add_argument("--top-k", type=int, default=3)
  p.add_argument("--out", default=None, help="folder (default: W/eval/figures)")
  args = p.parse_args(argv)

  from sg_detr_jax import jsonl  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.data.datasets import get_spec  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.inference.predictor import load_workdir_config  # pylint: disable=g-import-not-at-top

  config = load_workdir_config(args.workdir)
  suffix = "_detr" if args.head == "detr" else ""
  pred_path = os.path.join(args.workdir, "eval", f"{args.split}_preds{suffix}.jsonl")
  if not os.path.isfile(pred_path):
    raise SystemExit(f"{pred_path} not found: run `python -m launch.evaluate --workdir "
                     f"{args.workdir} --split {args.split}` first")
  preds = {str(r["qid"]): r for r in jsonl.read_jsonl(pred_path)}
  gt_path = args.gt or config.data.gt_files.get(args.split, "")
  gts = {str(r["qid"]): r for r in jsonl.read_jsonl(gt_path)} if gt_path else {}
  missing = [q for q in args.qids if q not in preds]
  if missing:
    raise SystemExit(f"qids {missing} are not in {pred_path}")
  clip_len = get_spec(config.data.dataset).clip_len
  out = args.out or os.path.join(args.workdir, "eval", "figures")
  for q in args.qids:
    path = draw(preds[q], gts.get(q), clip_len, os.path.join(out, f"{args.split}_{q}.png"),
                args.top_k)
    print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
