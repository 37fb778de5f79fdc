"""Predict moments and clip scores for feature files with a trained workdir.

  python -m launch.predict --workdir W --video V.npz --text T.npz [--video V2.npz --text T2.npz ...] \
      [--checkpoint best|latest|STEP] [--video-key features] [--text-key last_hidden_state] \
      [--duration SECONDS ...] [--out predictions.jsonl]

`--video` and `--text` are paired in order (one query per pair; repeat a video file to ask it several
queries). Each output line is {"video": path, "text": path, "pred_relevant_windows": [[st, ed,
score], ...], "pred_relevant_windows_detr": [...], "pred_saliency_scores": [...]}, written to
--out (atomically) or printed.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--workdir", required=True)
  p.add_argument("--checkpoint", default="best", help="best | latest | a step number")
  p.add_argument("--video", action="append", required=True, help=".npz/.npy [T, Dv]; repeatable")
  p.add_argument("--text", action="append", required=True, help=".npz/.npy [L, Dt]; repeatable")
  p.add_argument("--video-key", default="features")
  p.add_argument("--text-key", default=None, help="default: the dataset's convention")
  p.add_argument("--duration", type=float, action="append", default=None,
                 help="video length in seconds per pair (default: clips x clip length)")
  p.add_argument("--out", default=None, help="jsonl file (default: stdout)")
  args = p.parse_args(argv)
  if len(args.video) != len(args.text):
    p.error(f"{len(args.video)} --video but {len(args.text)} --text: give them in pairs")
  if args.duration is not None and len(args.duration) != len(args.video):
    p.error("give one --duration per --video/--text pair, or none")

  from data_prep.features import load_array  # pylint: disable=g-import-not-at-top
  from sg_detr_jax import jsonl  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.inference.predictor import Predictor  # pylint: disable=g-import-not-at-top

  predictor = Predictor.from_workdir(args.workdir, args.checkpoint)
  text_key = args.text_key or predictor.spec.text_key
  pairs = [(load_array(v, args.video_key, "video features"), load_array(t, text_key, "text features"))
           for v, t in zip(args.video, args.text)]
  preds = predictor.predict_many(pairs, args.duration)
  rows = [{"video": v, "text": t,
           "pred_relevant_windows": [[round(float(x), 4) for x in w] for w in pr.windows],
           "pred_relevant_windows_detr": [[round(float(x), 4) for x in w] for w in pr.windows_detr],
           "pred_saliency_scores": [round(float(s), 4) for s in pr.saliency]}
          for v, t, pr in zip(args.video, args.text, preds)]
  if args.out:
    jsonl.write_jsonl(args.out, rows)
    print(f"{len(rows)} predictions written to {args.out}")
  else:
    for r in rows:
      print(json.dumps(r))
  return 0


if __name__ == "__main__":
  sys.exit(main())
