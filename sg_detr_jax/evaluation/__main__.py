"""Command line: `python -m sg_detr_jax.evaluation --pred P.jsonl --gt GT.jsonl --out M.json`."""

from __future__ import annotations

import argparse
import json
import sys

from sg_detr_jax import jsonl
from sg_detr_jax.evaluation import TASKS, SubmissionError, evaluate


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
  sys.exit(main())
