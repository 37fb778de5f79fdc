"""Command line: `python -m sg_detr_jax.evaluation --pred P.jsonl --gt GT.jsonl --out M.json`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from sg_detr_jax import jsonl
from sg_detr_jax.evaluation import TASKS, SubmissionError, evaluate  # numpy loads on first call


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--pred", required=True, help="prediction JSON-lines file")
  parser.add_argument("--gt", required=True, help="ground-truth annotation JSON-lines file")
  parser.add_argument("--out", help="where to write the metrics JSON (atomically)")
  parser.add_argument("--task", default="qvhighlights", choices=TASKS)
  parser.add_argument("--style", default="cg", choices=("md", "cg"),
                      help="md: the official Moment-DETR keys only; cg: + R1@0.3..0.45 and mIoU")
  parser.add_argument("--no-match-number", action="store_true",
                      help="evaluate the shared qids only instead of requiring equal qid sets")
  args = parser.parse_args(argv)
  try:
    metrics = evaluate(jsonl.read_jsonl(args.pred), jsonl.read_jsonl(args.gt), task=args.task,
                       style=args.style, source=args.pred, match_number=not args.no_match_number)
  except (SubmissionError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.out:
    jsonl.write_json(args.out, metrics)
  print(json.dumps(metrics["brief"], indent=4))
  return 0


if __name__ == "__main__":
  # The metrics use no BLAS call; starting OpenBLAS's thread pool alone costs ~0.08 s of the ~0.5 s
  # command on a 2-core machine. Only for this process, only before numpy loads, and only if the
  # user has not chosen a value.
  if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
  sys.exit(main())
