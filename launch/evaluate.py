"""Evaluate a trained checkpoint: official-format predictions and metrics.

  python -m launch.evaluate --config configs/synthetic.py --workdir W \
      [--checkpoint best|latest|STEP] [--split val|test]

Writes W/eval/<split>_preds.jsonl (WBF-fused, the main predictions), <split>_preds_detr.jsonl and,
when the split has labels (config.data.gt_files.<split>), <split>_metrics.json.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax

from launch import config_flags


def run(config, workdir: str, checkpoint: str = "best", split: str | None = None,
        quiet: bool = False) -> dict | None:
  from sg_detr_jax.inference.evaluate_split import evaluate_split
  from sg_detr_jax.training import steps as steps_lib
  from sg_detr_jax.training.checkpoints import Checkpoints
  from sg_detr_jax.training.loop import build

  split = split or config.data.eval_split
  ckpts = Checkpoints(workdir)
  if checkpoint == "best" and ckpts.best() is None:
    checkpoint = "latest"  # nothing evaluated yet (e.g. a split without labels)
  step = ckpts.resolve(checkpoint)
  graphdef, state, _, _ = build(config, 1)
  params = ckpts.restore_params(step, jax.eval_shape(lambda: state))
  ckpts.close()
  predict_step = steps_lib.make_predict_step(graphdef, config)
  metrics = evaluate_split(predict_step, params, config, split, os.path.join(workdir, "eval"))
  if not quiet:
    print(f"checkpoint {step}, split {split}: predictions in {os.path.join(workdir, 'eval')}")
    if metrics:
      for k, v in metrics["brief"].items():
        print(f"  {k:<24} {v:8.2f}")
  return metrics


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--config", required=True)
  p.add_argument("--workdir", required=True)
  p.add_argument("--checkpoint", default="best", help="best | latest | a step number")
  p.add_argument("--split", default=None, help="default: config.data.eval_split")
  args, overrides = p.parse_known_args(argv)
  config = config_flags.load(args.config, overrides)
  run(config, args.workdir, args.checkpoint, args.split)
  return 0


if __name__ == "__main__":
  sys.exit(main())
