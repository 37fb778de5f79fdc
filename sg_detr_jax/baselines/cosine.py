"""Untrained baselines on a built TFDS split: text-video cosine similarity, and chance.

  python -m sg_detr_jax.baselines.cosine --data-dir D --dataset qvhighlights --split val \
      --gt ANNOTATIONS.jsonl [--out-dir OUT]

Cosine: a clip's saliency is the cosine between the mean query token and the clip feature (over the
first min(video_dim, text_dim) dimensions). Moments: every window of 1..32 clips is scored by the mean
saliency inside minus the mean outside; greedy NMS (IoU 0.5) keeps the 10 best.
Chance: uniform random saliency and random windows, the floor any trained model must clear.
These numbers are the reference the README quotes for "clearly above chance, far from perfect".
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from sg_detr_jax import jsonl
from sg_detr_jax.data.datasets import get_spec
from sg_detr_jax.data.tfds_source import open_split
from sg_detr_jax.evaluation import evaluate
from sg_detr_jax.evaluation.submission import make_record
from sg_detr_jax.inference.postprocess import nms

WINDOW_LENGTHS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)  # clips
NMS_IOU = 0.5
TOP_K = 10


def clip_scores(video: np.ndarray, text: np.ndarray) -> np.ndarray:
  """[T] cosine between each clip and the mean text token."""
  d = min(video.shape[1], text.shape[1])
  v = video[:, :d] / (np.linalg.norm(video[:, :d], axis=1, keepdims=True) + 1e-8)
  t = text[:, :d].mean(0)
  return v @ (t / (np.linalg.norm(t) + 1e-8))


def windows_from_scores(scores: np.ndarray, clip_len: float) -> np.ndarray:
  """[<=10, 3] (start s, end s, score): contrast-scored sliding windows after greedy NMS."""
  n = len(scores)
  csum = np.r_[0.0, np.cumsum(scores)]
  total = csum[-1]
  cands = []
  for length in WINDOW_LENGTHS:
    if length > n:
      break
    starts = np.arange(n - length + 1)
    inside = (csum[starts + length] - csum[starts]) / length
    outside = (total - inside * length) / max(n - length, 1)
    cands.append(np.stack([starts, starts + length, inside - outside], axis=1))
  out = nms(np.concatenate(cands), NMS_IOU, TOP_K)
  out[:, :2] *= clip_len
  return out


def predict(data_dir: str, dataset: str, split: str, kind: str, seed: int = 0) -> list[dict]:
  """Prediction records of the "cosine" or "chance" baseline for every query of a split."""
  source, meta = open_split(data_dir, dataset, split)
  spec = get_spec(dataset)
  rng = np.random.default_rng(seed)
  records = []
  for i in range(len(source)):
    ex = source[i]
    video, text = ex["video_features"], ex["text_features"]
    if kind == "cosine":
      sal = clip_scores(video, text)
    elif kind == "chance":
      sal = rng.random(len(video))
    else:
      raise ValueError(f"unknown baseline {kind!r}")
    windows = windows_from_scores(sal, float(ex["clip_len"])) if spec.has_windows else None
    qid = ex["qid"].decode()
    records.append(make_record(int(qid) if meta["qid_type"] == "int" else qid,
                               ex["query"].decode(), ex["vid"].decode(), windows, sal))
  return records


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--data-dir", required=True)
  p.add_argument("--dataset", default="qvhighlights")
  p.add_argument("--split", default="val")
  p.add_argument("--gt", required=True, help="the split's annotation jsonl")
  p.add_argument("--out-dir", default=None, help="write {kind}_preds.jsonl / _metrics.json here")
  args = p.parse_args(argv)
  gt = jsonl.read_jsonl(args.gt)
  summary = {}
  for kind in ("cosine", "chance"):
    preds = predict(args.data_dir, args.dataset, args.split, kind)
    metrics = evaluate(preds, gt, task=args.dataset)
    summary[kind] = metrics["brief"]
    if args.out_dir:
      jsonl.write_jsonl(os.path.join(args.out_dir, f"{kind}_preds.jsonl"), preds)
      jsonl.write_json(os.path.join(args.out_dir, f"{kind}_metrics.json"), metrics)
  print(json.dumps(summary, indent=2))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
