"""Train SG-DETR and evaluate it on the validation split.

  python -m launch.train --config=configs/synthetic.py --workdir=workdirs/synthetic \
      [--config.train.num_epochs=20 ...] [--noprogress] [--distributed [--coordinator HOST:PORT
      --num_processes N --process_id I]]

Re-running on an existing workdir resumes from its latest checkpoint. Several processes (GPU nodes,
TPU hosts, or several processes on one machine): add --distributed and start one process per host
(launch/slurm_gpu.sh, launch/tpu_pod.sh; elsewhere give --coordinator/--num_processes/--process_id
or the JAX_* variables, see launch/distributed.py `Distributed` for the timeouts); the mesh spans
every device and each process reads its own rows of every global batch. With the synthetic config
the dataset is generated and built on first use. When training ends, the best checkpoint's
validation metrics are printed and written to <workdir>/eval/. `--config` takes
`configs/<name>.py[:arg]`; every `--config.a.b=v` must name an existing field of that config and
parse as its type. From Python: `run(config, workdir)`.

SIGTERM (a scheduler's preemption notice) stops training on every process at one step, saves that
step and exits with status 143 (128 + SIGTERM); the same command resumes from there.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from launch import cli
from launch import distributed as distributed_lib

PREEMPTED_EXIT_STATUS = 143  # what a process ended by SIGTERM reports: 128 + 15


def ensure_synthetic(config) -> None:
  """Generates + builds the synthetic dataset of `config.data` if its TFDS folder is missing."""
  d = config.data
  if not d.synthetic_raw_dir or os.path.isdir(d.data_dir):
    return
  from data_prep import build_tfds, synthetic
  raw = d.synthetic_raw_dir
  print(f"generating the synthetic dataset in {raw} ...", flush=True)
  synthetic.generate(raw, seed=config.seed, video_dim=d.video_dim, text_dim=d.text_dim)
  build_tfds.build(d.dataset, [os.path.join(raw, "annotations")],
                   [os.path.join(raw, "video_features")], os.path.join(raw, "text_features"),
                   d.data_dir)


def print_brief(metrics: dict, title: str) -> None:
  print(f"\n{title}")
  for k, v in metrics["brief"].items():
    print(f"  {k:<24} {v:8.2f}")


def run(config, workdir: str, *, progress: bool = True,
        distributed: bool | distributed_lib.Distributed = False) -> dict | None:
  """Trains (or resumes) in `workdir`, then evaluates the best checkpoint; returns its metrics.

  `distributed`: True (auto-detected / $JAX_* environment) or a `distributed_lib.Distributed`:
  this process joins a multi-process run first (process 0 writes the logs, predictions and metrics).
  """
  if distributed:
    distributed_lib.join(distributed)
  else:
    ensure_synthetic(config)  # multi-process runs read a dataset built beforehand
  import jax  # pylint: disable=g-import-not-at-top
  from launch import evaluate  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.training.loop import train_and_evaluate  # pylint: disable=g-import-not-at-top
  train_and_evaluate(config, workdir, progress=progress)
  metrics = evaluate.run(config, workdir, "best", config.data.eval_split, quiet=True)
  if metrics and jax.process_index() == 0:
    print_brief(metrics, f"best checkpoint on {config.data.eval_split} "
                         f"(files in {os.path.join(workdir, 'eval')}):")
  return metrics


def define_flags() -> None:
  """The command line. Defined only when this module is the program: other entry points import
  it, and absl flags are process-wide."""
  cli.define_config()
  flags.DEFINE_string("workdir", None, "run folder: checkpoints, logs, eval/; an existing one "
                      "is resumed")
  flags.DEFINE_bool("progress", True, "progress bar (--noprogress: logs only)")
  distributed_lib.define_flags()
  flags.mark_flag_as_required("workdir")


def main(argv) -> None:
  cli.no_positional_args(argv)
  from sg_detr_jax.training.preemption import Preempted  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  try:
    run(f.config, f.workdir, progress=f.progress,
        distributed=distributed_lib.from_flags() or False)
  except Preempted as e:
    # The checkpoint of the step reached is on disk; the exit status is a SIGTERM's, so a
    # scheduler sees a terminated job (and requeues it if told to).
    print(e, file=sys.stderr)
    sys.exit(PREEMPTED_EXIT_STATUS)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
