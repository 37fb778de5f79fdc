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


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--config", default="configs/qvhighlights.py")
  p.add_argument("--batch", type=int, nargs="+", default=[32])
  p.add_argument("--steps", type=int, default=5)
  args, overrides = p.parse_known_args(argv)
  config = config_flags.load(args.config, overrides)
  print(f"devices: {jax.devices()}")
  for bsz in args.batch:
    batch = dummy_batch(config, bsz)
    rng = np.random.default_rng(0)
    batch["video"] = rng.normal(size=batch["video"].shape).astype(np.float32)
    batch["text"] = rng.normal(size=batch["text"].shape).astype(np.float32)
    batch.update(pos_idx=np.tile([[36, 38]], (bsz, 1)).astype(np.int32),
                 neg_idx=np.tile([[2, 70]], (bsz, 1)).astype(np.int32),
                 real_neg=np.ones(bsz, bool))
    graphdef, state, tx, schedule = build(config, 100)
    predict = steps_lib.make_predict_step(graphdef, config)
    c, t = timed(lambda: predict(state["params"], batch), args.steps)
    print(f"batch {bsz}: inference forward {t:.3f} s (compile {c:.1f} s)")
    train = steps_lib.make_train_step(graphdef, config, tx, schedule)
    key = jax.random.key(0, impl=config.train.prng_impl)
    holder = {"state": state}

    def one_step():
      holder["state"], metrics = train(holder["state"], batch, key)
      return metrics["loss"]

    c, t = timed(one_step, args.steps)
    print(f"batch {bsz}: train step {t:.3f} s (compile {c:.1f} s)")


if __name__ == "__main__":
  main()
