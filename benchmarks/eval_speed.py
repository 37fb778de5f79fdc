"""Times the evaluation of the QVHighlights val sample predictions; prints seconds as JSON.

  python benchmarks/eval_speed.py [--shared ../shared] [--repeats 5]
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sg_detr_jax import jsonl  # pylint: disable=g-import-not-at-top
from sg_detr_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args()
  qvh = os.path.join(args.shared, "reference", "qvhighlights")
  t0 = time.perf_counter()
  preds = jsonl.read_jsonl(os.path.join(qvh, "sample_val_preds.jsonl"))
  gt = jsonl.read_jsonl(os.path.join(qvh, "highlight_val_release.jsonl"))
  load_s = time.perf_counter() - t0
  times = {}
  for style in ("md", "cg"):
    runs = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      evaluate(preds, gt, task="qvhighlights", style=style)
      runs.append(time.perf_counter() - t0)
    times[style] = statistics.median(runs)
  print(json.dumps({"queries": len(preds), "load_s": round(load_s, 3),
                    "eval_s_median": {k: round(v, 3) for k, v in times.items()}}))


if __name__ == "__main__":
  main()
