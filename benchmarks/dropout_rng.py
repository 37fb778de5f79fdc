"""Dropout masks from a counter hash (ours) or from jax.random: compile and step time of the train step.

  python benchmarks/dropout_rng.py [--config=configs/synthetic.py] [--batch=16] [--steps=5] \
      [--impls=hash,threefry,rbg]

`layers.dropout` / `layers.drop_path` draw their keep masks with `layers.keep_mask`: a MurmurHash3
finaliser over (element index, seed) (`hash`). The alternatives swap in `jax.random.bernoulli` on a
key built from the same per-site seed: `threefry` (jax's default PRNG, what `nnx.Dropout` with
`nnx.Rngs` draws from) and `rbg` (XLA's RngBitGenerator). Everything else is the train step of
launch.train (`benchmarks/model_speed.time_jax`, random batch with the config's shapes). Prints one
line per implementation and a JSON object.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks.model_speed import time_jax  # noqa: E402
from launch import cli  # noqa: E402
from sg_detr_jax.models import layers  # noqa: E402

HASH = layers.keep_mask


def _threefry(seed, rate, shape):
  key = jax.random.wrap_key_data(seed, impl="threefry2x32")
  return jax.random.bernoulli(key, 1.0 - rate, shape)


def _rbg(seed, rate, shape):
  key = jax.random.wrap_key_data(jnp.concatenate([seed, seed ^ jnp.uint32(0x9E3779B9)]),
                                 impl="rbg")
  return jax.random.bernoulli(key, 1.0 - rate, shape)


IMPLS = {"hash": HASH, "threefry": _threefry, "rbg": _rbg}


def measure(config, impl: str, batch_size: int, steps: int) -> dict:
  """time_jax of `config` with the keep masks of `impl` (compiled afresh)."""
  layers.keep_mask = IMPLS[impl]
  jax.clear_caches()
  try:
    return time_jax(config.copy_and_resolve_references(), batch_size, steps)
  finally:
    layers.keep_mask = HASH


def define_flags() -> None:
  cli.define_config("configs/synthetic.py")
  flags.DEFINE_integer("batch", 16, "batch size")
  flags.DEFINE_integer("steps", 5, "timed calls after the compile (median)")
  flags.DEFINE_list("impls", list(IMPLS), "implementations to measure")


def main(argv) -> None:
  cli.no_positional_args(argv)
  f = flags.FLAGS
  print(f"devices: {jax.devices()}")
  out = {}
  for impl in f.impls:
    r = measure(f.config, impl, f.batch, f.steps)
    out[impl] = {k: round(v, 3) for k, v in r.items()}
    print(f"{impl:9s} train step {r['train_s']:.3f} s (compile {r['train_compile_s']:.1f} s), "
          f"inference {r['infer_s']:.3f} s (compile {r['infer_compile_s']:.1f} s)", flush=True)
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
