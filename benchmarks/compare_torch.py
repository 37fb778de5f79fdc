"""Side-by-side speed of this JAX model and a PyTorch model: same batch shapes, same CPU threads.

  python benchmarks/compare_torch.py --torch-adapter my_adapter:make \
      [--config configs/qvhighlights.py] [--batch 32] [--steps 5] [--threads 2] [--config.x=...]

The PyTorch side is reached through an adapter: a function `make(batch)` that receives our random
batch (a dict of numpy arrays: video [B, Lv, Dv+2], video_mask, text [B, Lt, Dt], text_mask, spans,
span_mask, saliency, ...) and returns `(infer, train_step)`, two argument-less callables that run one
inference forward (under torch.no_grad) and one full training step (forward, loss, backward,
optimizer step) of the PyTorch model on that batch. For the official SG-DETR (chinagalaxy2002/SG_CGP,
checked out beside this repo and on PYTHONPATH), the adapter instantiates `cfg.model` with hydra,
builds its collated batch from ours (the official collate's keys, masks inverted where it uses
padding masks) and wraps the LightningModule's `training_step` + its optimizer.
`benchmarks/torch_mlp_adapter.py` is a small self-contained adapter, used by the tests.

Prints one JSON object: medians of `--steps` calls after a warm-up call, per side, and the ratios
(torch time / JAX time; above 1 means JAX is faster).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def median_time(fn, steps: int) -> float:
  import numpy as np  # pylint: disable=g-import-not-at-top
  fn()  # warm-up
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--torch-adapter", required=True, help="module:function, see above")
  p.add_argument("--config", default="configs/qvhighlights.py")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--threads", type=int, default=None,
                 help="CPU cores for both sides (default: all)")
  args, overrides = p.parse_known_args(argv)
  if args.threads:
    # Pin the process to the first N cores before either library starts its thread pools: XLA's
    # CPU client sizes its pool from the affinity mask, and torch is told the same count.
    os.sched_setaffinity(0, range(args.threads))
  import torch  # pylint: disable=g-import-not-at-top
  if args.threads:
    torch.set_num_threads(args.threads)

  import model_speed  # pylint: disable=g-import-not-at-top
  from launch import config_flags  # pylint: disable=g-import-not-at-top

  config = config_flags.load(args.config, overrides)
  jax_times = model_speed.time_jax(config, args.batch, args.steps)
  module_name, _, fn_name = args.torch_adapter.partition(":")
  make = getattr(importlib.import_module(module_name), fn_name or "make")
  infer, train_step = make(model_speed.random_batch(config, args.batch))
  torch_times = {"infer_s": median_time(infer, args.steps),
                 "train_s": median_time(train_step, args.steps)}
  result = {"batch": args.batch, "threads": args.threads or os.cpu_count(),
            "jax": jax_times, "torch": torch_times,
            "train_speedup": torch_times["train_s"] / jax_times["train_s"],
            "infer_speedup": torch_times["infer_s"] / jax_times["infer_s"]}
  print(json.dumps(result, indent=1))
  return result


if __name__ == "__main__":
  main()
