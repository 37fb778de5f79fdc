"""Train SG-DETR and evaluate it on the validation split.

  python -m launch.train --config configs/synthetic.py --workdir workdirs/synthetic \
      [--config.train.num_epochs=20 ...]

Re-running on an existing workdir resumes from its latest checkpoint. Several processes (GPU nodes,
TPU hosts): add --distributed and start one process per host (launch/slurm_gpu.sh,
launch/tpu_pod.sh); the mesh spans every device and each process reads its own slice of the data. With the synthetic config
the dataset is generated and built on first use. When training ends, the best checkpoint's
validation metrics are printed and written to <workdir>/eval/.
"""

from __future__ import annotations

import argparse
import os
import sys

from launch import config_flags


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


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--config", required=True)
  p.add_argument("--workdir", required=True)
  p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
  p.add_argument("--distributed", action="store_true",
                 help="multi-process run: jax.distributed.initialize() (SLURM / Cloud TPU / "
                      "JAX_COORDINATOR_ADDRESS environments are detected)")
  args, overrides = p.parse_known_args(argv)
  if args.distributed:
    import jax  # pylint: disable=g-import-not-at-top
    jax.distributed.initialize()
  config = config_flags.load(args.config, overrides)
  config.lock()
  if not args.distributed:
    ensure_synthetic(config)  # multi-process runs read a dataset built beforehand
  from launch import evaluate
  from sg_detr_jax.training.loop import train_and_evaluate
  train_and_evaluate(config, args.workdir, progress=not args.no_progress)
  metrics = evaluate.run(config, args.workdir, "best", config.data.eval_split, quiet=True)
  if metrics:
    print_brief(metrics, f"best checkpoint on {config.data.eval_split} "
                         f"(files in {os.path.join(args.workdir, 'eval')}):")
  return 0


if __name__ == "__main__":
  sys.exit(main())
