"""Evaluate a trained checkpoint: official-format predictions and metrics.

  python -m launch.evaluate --config configs/synthetic.py --workdir W \
      [--checkpoint best|latest|STEP] [--split val|test]

An official PyTorch checkpoint (plain state_dict, Lightning .ckpt or .safetensors; `torch` extra)
is evaluated in one command, converted in memory (launch.convert_torch writes it as a workdir):

  python -m launch.evaluate --config configs/qvhighlights.py --torch-checkpoint sgdetr_qvh.ckpt \
      --workdir W --config.data.data_dir=DATA

Writes W/eval/<split>_preds.jsonl (WBF-fused, the main predictions), <split>_preds_detr.jsonl and,
when the split has labels (config.data.gt_files.<split>), <split>_metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax

from launch import config_flags


def run(config, workdir: str, checkpoint: str = "best", split: str | None = None,
        quiet: bool = False, torch_checkpoint: str | None = None) -> dict | None:
  from sg_detr_jax.inference.evaluate_split import evaluate_split
  from sg_detr_jax.training import steps as steps_lib
  from sg_detr_jax.training.checkpoints import Checkpoints
  from sg_detr_jax.training.loop import build

  split = split or config.data.eval_split
  graphdef, state, _, _ = build(config, 1)
  if torch_checkpoint:
    from launch.convert_torch import OFFICIAL_ROOTS
    from sg_detr_jax.porting import convert
    from sg_detr_jax.porting.official_files import load_state_dict
    params = convert.from_official(load_state_dict(torch_checkpoint, OFFICIAL_ROOTS), config.model,
                                   state["params"], where=torch_checkpoint)
    step = os.path.basename(torch_checkpoint)
  else:
    ckpts = Checkpoints(workdir)
    if checkpoint == "best" and ckpts.best() is None:
      checkpoint = "latest"  # nothing evaluated yet (e.g. a split without labels)
    step = ckpts.resolve(checkpoint)
    params = ckpts.restore_params(step, jax.eval_shape(lambda: state))
    ckpts.close()
  predict_step = steps_lib.make_predict_step(graphdef, config)
  out_dir = os.path.join(workdir, "eval")
  metrics = evaluate_split(predict_step, params, config, split, out_dir)
  if not quiet:
    print(f"checkpoint {step}, split {split}: predictions in {out_dir}")
    if metrics:
      # Both heads, as the official run logs them: the DETR head's numbers are the official
      # headline metrics, the fused (DETR + ATSS WBF) ones its "-COMB" set.
      with open(os.path.join(out_dir, f"{split}_metrics.json"), encoding="utf-8") as f:
        both = json.load(f)
      for head, title in (("detr", "DETR head (official metrics)"),
                          ("fused", "DETR + ATSS fused (official -COMB)")):
        print(f" {title}")
        for k, v in both[head]["brief"].items():
          print(f"  {k:<24} {v:8.2f}")
  return metrics


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--config", required=True)
  p.add_argument("--workdir", required=True)
  p.add_argument("--checkpoint", default="best", help="best | latest | a step number")
  p.add_argument("--split", default=None, help="default: config.data.eval_split")
  p.add_argument("--torch-checkpoint", default=None,
                 help="evaluate an official PyTorch checkpoint (converted in memory)")
  args, overrides = p.parse_known_args(argv)
  config = config_flags.load(args.config, overrides)
  run(config, args.workdir, args.checkpoint, args.split, torch_checkpoint=args.torch_checkpoint)
  return 0


if __name__ == "__main__":
  sys.exit(main())
