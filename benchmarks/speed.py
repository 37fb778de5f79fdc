"""This port against the official PyTorch SG-DETR: train step, inference forward, forward +
post-processing, with the ratios the project targets (issue 20).

  python benchmarks/speed.py [--batch=32,128] [--steps=7] [--config=configs/qvhighlights.py] \
      [--config.x=...]

Full QVHighlights configuration, random features of the real shapes (`model_speed.sized_batch`:
every row valid, the collab group sized as the official code would size it for the batch). For
every batch size, after the compile, `--steps` timed calls of
  train:        the jitted train step of launch.train (forward, host Hungarian matcher, backward,
                AdamW), state carried from call to call;
  forward:      the jitted inference forward (predict step) up to its outputs on the host;
  forward+post: the same plus the official post-processing of every row into windows and saliency
                scores (`postprocess_speed.postprocess`: `batch_windows` + `saliency_scores`, what
                launch.evaluate and the Predictor run);
  post:         that post-processing alone, on the outputs of one forward;
  stream:       forward + post-processing of `--stream_batches` consecutive batches as
                launch.evaluate runs them (`inference/overlap.py`: the host post-processes batch n
                while the device computes batch n + 1, `train.eval_batches_ahead`), per batch.
Prints the median, min and max of each (these shared VMs drift 10-20 % between runs: compare
medians, and rerun), then one JSON object with the ratios against the official numbers measured
side by side on the 2-core reference CPU at batch 32 (OFFICIAL below): the train-step speed-up
(target >= 2) and the inference throughput ratio, queries per second of forward+post against the
official's (target >= 3). At other batch sizes the ratio is taken against the official per-query
time at batch 32 (the only one measured), so it is labelled `vs_official_b32`.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
from absl import flags  # noqa: E402

import model_speed  # noqa: E402
import postprocess_speed  # noqa: E402
from launch import cli  # noqa: E402
from sg_detr_jax.inference.overlap import batches_ahead  # noqa: E402
from sg_detr_jax.training import steps as steps_lib  # noqa: E402
from sg_detr_jax.training.loop import build  # noqa: E402

# The official implementation on the 2-core reference CPU, 2 threads, batch 32 (seconds).
OFFICIAL = {"batch": 32, "train_s": 2.83, "forward_s": 0.390, "forward_post_s": 0.773}


def spread(fn, n: int) -> dict:
  """Compile (first call) then `n` timed calls of `fn` (which blocks): seconds."""
  t = time.perf_counter()
  fn()
  compile_s = time.perf_counter() - t
  times = []
  for _ in range(n):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
          "compile_s": compile_s}


def measure(config, bsz: int, steps: int, stream_batches: int) -> dict:
  batch = model_speed.sized_batch(config, bsz)
  _, state, _, _ = build(config, 100)
  params = state["params"]
  predict = steps_lib.make_predict_step(config)
  inputs = {k: batch[k] for k in ("video", "video_mask", "text", "text_mask")}
  rows = postprocess_speed.batch_rows(batch)

  def forward():
    return jax.device_get(predict(params, inputs))

  def post(out):
    return postprocess_speed.postprocess(out, rows, config.postprocess)

  def forward_post():
    return post(forward())

  res = {"forward": spread(forward, steps)}  # its first call is the compile
  out = forward()
  res.update(forward_post=spread(forward_post, steps), post=spread(lambda: post(out), steps))
  times = postprocess_speed.stream_times(lambda: predict(params, inputs), rows,
                                         config.postprocess, stream_batches,
                                         batches_ahead(config), steps)
  res["stream"] = {"median_s": statistics.median(times), "min_s": min(times),
                   "max_s": max(times), "compile_s": 0.0}
  train = steps_lib.make_train_step(config, 100)
  key = jax.random.key(0, impl=config.train.prng_impl)
  holder = {"state": state}

  def train_step():
    holder["state"], metrics = train(holder["state"], batch, key)
    jax.block_until_ready(metrics["loss"])

  res["train"] = spread(train_step, steps)
  return res


def ratios(bsz: int, r: dict) -> dict:
  per_query = {k: r[k]["median_s"] / bsz for k in ("train", "forward", "forward_post", "stream")}
  official = {k: OFFICIAL[f"{k}_s"] / OFFICIAL["batch"] for k in per_query if k != "stream"}
  official["stream"] = official["forward_post"]
  key = "vs_official" if bsz == OFFICIAL["batch"] else "vs_official_b32"
  return {key: {
      "train_speedup": round(official["train"] / per_query["train"], 2),
      "forward_speedup": round(official["forward"] / per_query["forward"], 2),
      "throughput_ratio_forward_post": round(official["forward_post"] / per_query["forward_post"],
                                             2),
      "throughput_ratio_stream": round(official["stream"] / per_query["stream"], 2)},
          "queries_per_s_forward_post": round(1 / per_query["forward_post"], 1),
          "queries_per_s_stream": round(1 / per_query["stream"], 1)}


def define_flags() -> None:
  cli.define_config("configs/qvhighlights.py")
  flags.DEFINE_list("batch", ["32", "128"], "batch sizes")
  flags.DEFINE_integer("steps", 7, "timed calls after the compile")
  flags.DEFINE_integer("stream_batches", 4, "consecutive batches of one `stream` measurement")


def main(argv) -> None:
  cli.no_positional_args(argv)
  config = flags.FLAGS.config
  result = {"devices": [str(d) for d in jax.local_devices()],
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "official": OFFICIAL, "batches": {}}
  for bsz in [int(b) for b in flags.FLAGS.batch]:
    with config.unlocked():
      r = measure(config, bsz, flags.FLAGS.steps, flags.FLAGS.stream_batches)
    for k, v in r.items():
      print(f"batch {bsz} {k:12s} median {v['median_s']:.3f} s [{v['min_s']:.3f}-"
            f"{v['max_s']:.3f}] (compile {v['compile_s']:.1f} s)", flush=True)
    result["batches"][bsz] = {k: {kk: round(vv, 4) for kk, vv in v.items()}
                              for k, v in r.items()}
    result["batches"][bsz].update(ratios(bsz, r))
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
