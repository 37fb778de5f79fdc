"""Evaluate a trained checkpoint: official-format predictions and metrics.

  python -m launch.evaluate --config configs/synthetic.py --workdir W \
      [--checkpoint best|latest|STEP] [--split val|test]

An official PyTorch checkpoint (plain state_dict, Lightning .ckpt or .safetensors; `torch` extra)
is evaluated in one command, converted in memory (launch.convert_torch writes it as a workdir):

  python -m launch.evaluate --config configs/qvhighlights.py --torch_checkpoint sgdetr_qvh.ckpt \
      --workdir W --config.data.data_dir=DATA

Several processes: add --distributed (and --coordinator/--num_processes/--process_id where they
are not detected), as for launch.train.

Writes W/eval/<split>_preds.jsonl (WBF-fused, the main predictions), <split>_preds_detr.jsonl and,
when the split has labels (config.data.gt_files.<split>), <split>_metrics.json. From Python:
`run(config, workdir, ...)`.
"""

from __future__ import annotations

import json
import os

from absl import flags

from launch import cli
from launch import distributed as distributed_lib


def run(config, workdir: str, checkpoint: str = "best", split: str | None = None,
        quiet: bool = False, torch_checkpoint: str | None = None,
        distributed: bool | distributed_lib.Distributed = False) -> dict | None:
  """Predicts `split` with a checkpoint of `workdir` (see the module docstring); its metrics.

  Several devices: the batches are split over the mesh of `config.mesh` and the predictions
  gathered, so with several processes (`distributed`, as in launch.train) every process holds
  every prediction and process 0 writes the one set of files.
  """
  if distributed:
    distributed_lib.join(distributed, preemption_service=False)  # SIGTERM: stop as usual
  import jax  # pylint: disable=g-import-not-at-top
  from sg_detr_jax import sharding
  from sg_detr_jax.inference.evaluate_split import evaluate_split
  from sg_detr_jax.training import steps as steps_lib
  from sg_detr_jax.training.checkpoints import load_params
  from sg_detr_jax.training.loop import build

  split = split or config.data.eval_split
  graphdef, state, _, _ = build(config, 1)
  mesh = sharding.step_mesh(sharding.make_mesh(config.mesh))  # one device: none, as in training
  if mesh is not None:
    sharding.check_batch_size(config.train.eval_batch_size, mesh, config.mesh.data_axis)
    state = dict(state, params=sharding.replicate(state["params"], mesh))  # restored like this
  if torch_checkpoint:
    from launch.convert_torch import OFFICIAL_ROOTS
    from sg_detr_jax.porting import convert
    from sg_detr_jax.porting.official_files import load_state_dict
    params = convert.from_official(load_state_dict(torch_checkpoint, OFFICIAL_ROOTS), config.model,
                                   state["params"], where=torch_checkpoint)
    step = os.path.basename(torch_checkpoint)
  else:
    # 'best' is the latest when nothing was evaluated yet (e.g. a split without labels).
    step, params = load_params(workdir, state["params"], checkpoint)
  predict_step = steps_lib.make_predict_step(config, mesh)
  out_dir = os.path.join(workdir, "eval")
  metrics = evaluate_split(predict_step, params, config, split, out_dir)
  if not quiet and jax.process_index() == 0:
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


def define_flags() -> None:
  """The command line (defined only when this module is the program; see launch/cli.py)."""
  cli.define_config()
  flags.DEFINE_string("workdir", None, "the run folder (predictions go to <workdir>/eval)")
  flags.DEFINE_string("checkpoint", "best", "best | latest | a step number")
  flags.DEFINE_string("split", None, "default: config.data.eval_split")
  flags.DEFINE_string("torch_checkpoint", None,
                      "evaluate an official PyTorch checkpoint (converted in memory)")
  distributed_lib.define_flags()
  flags.mark_flag_as_required("workdir")


def main(argv) -> None:
  cli.no_positional_args(argv)
  f = flags.FLAGS
  run(f.config, f.workdir, f.checkpoint, f.split, torch_checkpoint=f.torch_checkpoint,
      distributed=distributed_lib.from_flags() or False)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
