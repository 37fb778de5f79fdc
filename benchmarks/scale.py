"""Training / inference throughput of the full model on the current devices, as one JSON object.

  python benchmarks/scale.py [--config=configs/qvhighlights.py] [--train_batch=32,128] \
      [--infer_batch=1,256] [--steps=20] [--data_dir=synthetic_data/tfds] [--config.x=...]

For every train batch size: median seconds per jitted train step over `--steps` calls after the
compile (data-parallel over all local devices, as launch.train runs it), the compile time, and the
share of the step spent in the host Hungarian matcher (scipy time inside the callback / step time).
For every inference batch size: queries per second of the jitted eval forward. Input feeding: the
seconds to draw one training batch from a built TFDS dataset through the grain pipeline and place
it on the devices (--data_dir, skipped when absent), and its share of a step. Peak memory: device
`peak_bytes_in_use` where the backend reports it, else the process's max RSS.
From Python: `run(config, train_batch, infer_batch, steps, data_dir)`.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

import model_speed  # noqa: E402
from launch import cli  # noqa: E402
from sg_detr_jax import sharding  # noqa: E402
from sg_detr_jax.losses import matching  # noqa: E402
from sg_detr_jax.training import steps as steps_lib  # noqa: E402
from sg_detr_jax.training.loop import build  # noqa: E402

_MATCH_SECONDS = [0.0]
_solve = matching._solve  # pylint: disable=protected-access


def _timed_solve(*args):
  t = time.perf_counter()
  out = _solve(*args)
  _MATCH_SECONDS[0] += time.perf_counter() - t
  return out


def placed(config, mesh, state, batch):
  """(step mesh, state, batch) placed as launch.train places them: over `mesh` (state
  replicated, batch split), or, on one device, committed to it without shardings (the program
  the training loop runs there, and the same compiled step)."""
  if sharding.step_mesh(mesh) is not None:
    return (mesh, sharding.replicate(state, mesh),
            sharding.shard_batch(batch, mesh, config.mesh.data_axis))
  return None, state, batch  # loop.build commits a one-device state to its device


def train_numbers(config, bsz, steps, mesh):
  config.train.batch_size = bsz
  graphdef, state, tx, schedule = build(config, 100)
  step_mesh, state, batch = placed(config, mesh, state, model_speed.sized_batch(config, bsz))
  train = steps_lib.make_train_step(config, 100, step_mesh)
  key = jax.random.key(0, impl=config.train.prng_impl)
  t = time.perf_counter()
  state, m = train(state, batch, key)
  jax.block_until_ready(m["loss"])
  compile_s = time.perf_counter() - t
  times = []
  _MATCH_SECONDS[0] = 0.0
  for _ in range(steps):
    t = time.perf_counter()
    state, m = train(state, batch, key)
    jax.block_until_ready(m["loss"])
    times.append(time.perf_counter() - t)
  step_s = float(np.median(times))
  return {"step_s": step_s, "compile_s": compile_s,
          "matcher_share": _MATCH_SECONDS[0] / max(sum(times), 1e-9)}


def predict_call(config, bsz, mesh):
  """(forward, batch): `forward()` runs the inference step of `config` (params placed by `placed`)
  on the model inputs of `batch`, a random batch of `bsz` rows (for post-processing's rows too)."""
  batch = model_speed.sized_batch(config, bsz)
  inputs = {k: batch[k] for k in ("video", "video_mask", "text", "text_mask")}
  _, state, _, _ = build(config, 100)
  step_mesh, state, _ = placed(config, mesh, state, inputs)
  predict = steps_lib.make_predict_step(config, step_mesh)
  params = state["params"]
  return lambda: predict(params, inputs), batch


def infer_numbers(config, bsz, steps, mesh):
  forward, _ = predict_call(config, bsz, mesh)
  compile_s, t = model_speed.timed(forward, steps)
  return {"queries_per_s": bsz / t, "forward_s": t, "compile_s": compile_s}


def feeding_numbers(config, data_dir, bsz, mesh, n=20):
  from sg_detr_jax.data.pipeline import device_arrays, train_dataset  # pylint: disable=g-import-not-at-top
  config.data.data_dir = data_dir
  ds, _ = train_dataset(config.data, bsz, 0)
  it = iter(ds)
  next(it)
  t = time.perf_counter()
  for _ in range(n):
    jax.block_until_ready(sharding.shard_batch(device_arrays(next(it)), mesh,
                                               config.mesh.data_axis))
  return (time.perf_counter() - t) / n


def peak_memory() -> dict:
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return {"device_peak_bytes": int(stats["peak_bytes_in_use"])}
  return {"host_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def run(config, train_batch=(32, 128), infer_batch=(1, 256), steps: int = 20,
        data_dir: str = "synthetic_data/tfds", label: dict | None = None) -> dict:
  """Prints and returns the JSON object described above; `label` is copied into it."""
  matching._solve = _timed_solve  # pylint: disable=protected-access  (traced after this line)
  mesh = sharding.make_mesh(config.mesh, jax.local_devices())
  result = {"devices": [str(d) for d in jax.local_devices()], "backend": jax.default_backend(),
            **(label or {}), "steps_timed": steps, "train": {}, "infer": {}}
  for bsz in train_batch:
    result["train"][bsz] = train_numbers(config, bsz, steps, mesh)
  for bsz in infer_batch:
    result["infer"][bsz] = infer_numbers(config, bsz, steps, mesh)
  if os.path.isdir(data_dir) and train_batch:
    bsz = train_batch[0]
    try:
      feed = feeding_numbers(config, data_dir, bsz, mesh)
      result["input_feeding"] = {"batch": bsz, "seconds_per_batch": feed,
                                 "share_of_step": feed / result["train"][bsz]["step_s"]}
    except ValueError as e:  # a dataset of other feature widths than the config
      result["input_feeding"] = {"skipped": str(e)}
  result["peak_memory"] = peak_memory()
  print(json.dumps(result, indent=1))
  return result


def define_flags() -> None:
  """The command line (defined only when this module is the program; see launch/cli.py)."""
  cli.define_config("configs/qvhighlights.py")
  flags.DEFINE_list("train_batch", ["32", "128"], "comma-separated train batch sizes ('' none)")
  flags.DEFINE_list("infer_batch", ["1", "256"], "comma-separated inference batch sizes")
  flags.DEFINE_integer("steps", 20, "timed calls after the compile (median)")
  flags.DEFINE_string("data_dir", "synthetic_data/tfds",
                      "a built TFDS dataset for the input-feeding number (skipped when absent)")


def main(argv) -> None:
  cli.no_positional_args(argv)
  f = flags.FLAGS
  config_path, overrides = cli.config_args()
  run(f.config, [int(b) for b in f.train_batch], [int(b) for b in f.infer_batch], f.steps,
      f.data_dir, label={"config": config_path, "overrides": overrides})


if __name__ == "__main__":
  define_flags()
  cli.run(main)
