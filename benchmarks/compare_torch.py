"""Side-by-side speed of this JAX model and a PyTorch model: same batch shapes, same CPU threads.

  python benchmarks/compare_torch.py --torch_adapter=my_adapter:make \
      [--config=configs/qvhighlights.py] [--batch=32] [--steps=5] [--threads=2] [--config.x=...]

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
(torch time / JAX time; above 1 means JAX is faster). From Python:
`run(config, adapter, batch, steps, threads)`.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from launch import cli  # noqa: E402


def median_time(fn, steps: int) -> float:
  import numpy as np  # pylint: disable=g-import-not-at-top
  fn()  # warm-up
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def run(config, adapter: str, batch: int = 32, steps: int = 5, threads: int | None = None) -> dict:
  """Prints and returns the JSON object described above.

  Args:
    config: the model's config.
    adapter: "module:function" of the PyTorch adapter (see above).
    batch: batch size of both sides.
    steps: timed calls after a warm-up (median).
    threads: CPU cores for both sides (None: all). Takes effect only if JAX has not started yet.
  """
  if threads:
    # Pin the process to the first N cores before either library starts its thread pools: XLA's
    # CPU client sizes its pool from the affinity mask, and torch is told the same count.
    os.sched_setaffinity(0, range(threads))
  import torch  # pylint: disable=g-import-not-at-top
  if threads:
    torch.set_num_threads(threads)

  import model_speed  # pylint: disable=g-import-not-at-top

  jax_times = model_speed.time_jax(config, batch, steps)
  module_name, _, fn_name = adapter.partition(":")
  make = getattr(importlib.import_module(module_name), fn_name or "make")
  infer, train_step = make(model_speed.sized_batch(config, batch))
  torch_times = {"infer_s": median_time(infer, steps),
                 "train_s": median_time(train_step, steps)}
  result = {"batch": batch, "threads": threads or os.cpu_count(),
            "jax": jax_times, "torch": torch_times,
            "train_speedup": torch_times["train_s"] / jax_times["train_s"],
            "infer_speedup": torch_times["infer_s"] / jax_times["infer_s"]}
  print(json.dumps(result, indent=1))
  return result


def define_flags() -> None:
  """The command line (defined only when this module is the program; see launch/cli.py)."""
  flags.DEFINE_string("torch_adapter", None, "module:function, see above")
  cli.define_config("configs/qvhighlights.py")
  flags.DEFINE_integer("batch", 32, "batch size of both sides")
  flags.DEFINE_integer("steps", 5, "timed calls after a warm-up (median)")
  flags.DEFINE_integer("threads", None, "CPU cores for both sides (default: all)")
  flags.mark_flags_as_required(["torch_adapter"])


def main(argv) -> None:
  cli.no_positional_args(argv)
  f = flags.FLAGS
  run(f.config, f.torch_adapter, f.batch, f.steps, f.threads)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
