"""Seconds per training step and per inference forward of the full model (QVHighlights shapes).

  python benchmarks/model_speed.py [--batch=32,128] [--steps=5] [--config=configs/qvhighlights.py] \
      [--config.x=...]

Random features with the real shapes (76 clips x 514, 40 tokens x 512, 10 windows); the train
step is the jitted one of launch.train (forward, Hungarian matching on the host, backward, AdamW).
Prints compile time and the median of `--steps` timed calls. Against the official PyTorch SG-DETR
(with the ratios and the spread): `benchmarks/speed.py`. From Python:
`time_jax(config, batch_size, steps)`.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from launch import cli  # noqa: E402
from sg_detr_jax.data.random_batch import random_batch  # noqa: E402
from sg_detr_jax.training import collab_size  # noqa: E402
from sg_detr_jax.training import steps as steps_lib  # noqa: E402
from sg_detr_jax.training.loop import build  # noqa: E402


def timed(fn, n):
  t = time.perf_counter()
  jax.block_until_ready(fn())
  compile_s = time.perf_counter() - t
  times = []
  for _ in range(n):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return compile_s, float(np.median(times))


def sized_batch(config, bsz: int) -> dict:
  """`random_batch(config, bsz)` (every row valid, features from seed 0). A config whose collab
  group is sized from the training data (`model.collab_size` 0) gets the size this batch needs
  (max_b |P_b|, the official group size), set in place."""
  batch = random_batch(config, bsz)
  if config.model.collab and config.model.collab_size <= 0:
    config.model.collab_size = collab_size.batch_positives(config, batch)
  return batch


def time_jax(config, bsz: int, steps: int, parts=("infer", "train")) -> dict:
  """{"infer_s", "infer_compile_s", "train_s", "train_compile_s"}: medians of `steps` calls
  (of the `parts` timed)."""
  batch = sized_batch(config, bsz)
  graphdef, state, tx, schedule = build(config, 100)
  out = {}
  if "infer" in parts:
    predict = steps_lib.make_predict_step(config)
    out["infer_compile_s"], out["infer_s"] = timed(lambda: predict(state["params"], batch), steps)
  if "train" not in parts:
    return out
  train = steps_lib.make_train_step(config, 100)
  key = jax.random.key(0, impl=config.train.prng_impl)
  holder = {"state": state}

  def one_step():
    holder["state"], metrics = train(holder["state"], batch, key)
    return metrics["loss"]

  out["train_compile_s"], out["train_s"] = timed(one_step, steps)
  return out


def define_flags() -> None:
  """The command line (defined only when this module is the program; see launch/cli.py)."""
  cli.define_config("configs/qvhighlights.py")
  flags.DEFINE_list("batch", ["32"], "comma-separated batch sizes")
  flags.DEFINE_integer("steps", 5, "timed calls after the compile (median)")
  flags.DEFINE_list("parts", ["infer", "train"], "what to time: infer, train")


def main(argv) -> None:
  cli.no_positional_args(argv)
  config = flags.FLAGS.config
  print(f"devices: {jax.devices()}")
  for bsz in [int(b) for b in flags.FLAGS.batch]:
    r = time_jax(config, bsz, flags.FLAGS.steps, flags.FLAGS.parts)
    if "infer_s" in r:
      print(f"batch {bsz}: inference forward {r['infer_s']:.3f} s "
            f"(compile {r['infer_compile_s']:.1f} s)", flush=True)
    if "train_s" in r:
      print(f"batch {bsz}: train step {r['train_s']:.3f} s (compile {r['train_compile_s']:.1f} s)",
            flush=True)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
