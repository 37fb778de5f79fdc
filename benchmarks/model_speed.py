"""Seconds per training step and per inference forward of the full model (QVHighlights shapes).

  python benchmarks/model_speed.py [--batch 32 128] [--steps 5] [--config configs/qvhighlights.py]

Random features with the real shapes (76 clips x 514, 40 tokens x 512, 10 windows); the train
step is the jitted one of launch.train (forward, Hungarian matching on the host, backward, AdamW).
Prints compile time and the median of `--steps` timed calls. Compare: the official PyTorch
SG-DETR measured on the same 2-core CPU takes 2.2 s per training step at batch 32 and 0.32 s per
inference forward.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from launch import config_flags  # noqa: E402
from launch.summary import dummy_batch  # noqa: E402
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


def random_batch(config, bsz: int) -> dict:
  """A training batch with the config's static shapes and random features (numpy).

  A config whose collab group is sized from the training data (`model.collab_size` 0) gets the
  size this batch needs (max_b |P_b|, the official group size), set in place.
  """
  batch = dummy_batch(config, bsz)
  rng = np.random.default_rng(0)
  batch["video"] = rng.normal(size=batch["video"].shape).astype(np.float32)
  batch["text"] = rng.normal(size=batch["text"].shape).astype(np.float32)
  mid = batch["video"].shape[1] // 2
  batch.update(pos_idx=np.tile([[mid, mid + 1]], (bsz, 1)).astype(np.int32),
               neg_idx=np.tile([[2, batch["video"].shape[1] - 3]], (bsz, 1)).astype(np.int32))
  if config.model.collab and config.model.collab_size <= 0:
    config.model.collab_size = collab_size.batch_positives(config, batch)
  return batch


def time_jax(config, bsz: int, steps: int) -> dict:
  """{"infer_s", "infer_compile_s", "train_s", "train_compile_s"}: medians of `steps` calls."""
  batch = random_batch(config, bsz)
  graphdef, state, tx, schedule = build(config, 100)
  predict = steps_lib.make_predict_step(graphdef, config)
  ci, ti = timed(lambda: predict(state["params"], batch), steps)
  train = steps_lib.make_train_step(graphdef, config, tx, schedule)
  key = jax.random.key(0, impl=config.train.prng_impl)
  holder = {"state": state}

  def one_step():
    holder["state"], metrics = train(holder["state"], batch, key)
    return metrics["loss"]

  ct, tt = timed(one_step, steps)
  return {"infer_s": ti, "infer_compile_s": ci, "train_s": tt, "train_compile_s": ct}


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--config", default="configs/qvhighlights.py")
  p.add_argument("--batch", type=int, nargs="+", default=[32])
  p.add_argument("--steps", type=int, default=5)
  args, overrides = p.parse_known_args(argv)
  config = config_flags.load(args.config, overrides)
  print(f"devices: {jax.devices()}")
  for bsz in args.batch:
    r = time_jax(config, bsz, args.steps)
    print(f"batch {bsz}: inference forward {r['infer_s']:.3f} s (compile {r['infer_compile_s']:.1f} s)")
    print(f"batch {bsz}: train step {r['train_s']:.3f} s (compile {r['train_compile_s']:.1f} s)",
          flush=True)


if __name__ == "__main__":
  main()
