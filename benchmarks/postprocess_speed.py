"""Seconds of host post-processing (scored windows + saliency) per batch, full QVHighlights config.

  python benchmarks/postprocess_speed.py [--batch=32,128] [--repeats=20] [--source=model,golden] \
      [--profile=32] [--config=configs/qvhighlights.py] [--config.x=...]

What is timed: `batch_windows` + `saliency_scores` of sg_detr_jax/inference/postprocess.py on the
host `Predictions` of one batch, the calls `Predictor.predict_many` and `records_for_batch` make
(the record formatting is not included). Sources of the outputs:

  model: the jitted predict step (training/steps.py) of a freshly initialised model on a random
    `varied` batch (data/random_batch.py: odd rows 8 clips shorter), run once at the largest batch
    size; smaller batches are its first rows (post-processing is per row).
  golden: the official model's raw outputs of shared/reference/official_golden/forward.npz (B=4, a
    perturbed, less uniform model: different list lengths), rows tiled to the batch size.

Prints, per source and batch size, the median and min/max of `--repeats` timed calls (after one
warm-up call), and a cProfile of the batch sizes in `--profile` (top 15 by own time). The official
PyTorch code takes ~0.38 s of post-processing at batch 32 on the 2-core reference CPU (0.773 s
forward + post-processing, 0.390 s forward alone). From Python: `time_postprocess(out, ...)`.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from launch import cli  # noqa: E402
from sg_detr_jax.data.random_batch import CLIP_SECONDS, random_batch  # noqa: E402
from sg_detr_jax.inference.overlap import overlapped  # noqa: E402
from sg_detr_jax.inference.postprocess import batch_windows, saliency_scores  # noqa: E402
from sg_detr_jax.models.outputs import Predictions  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHARED = os.environ.get("SG_DETR_SHARED", os.path.join(os.path.dirname(_REPO), "shared"))
GOLDEN = os.path.join(_SHARED, "reference", "official_golden", "forward.npz")


def batch_rows(batch: dict) -> dict:
  """The per-row inputs of post-processing for a `random_batch` (every valid clip a real one)."""
  valid = np.asarray(batch["video_mask"]).sum(1)
  return {"span_seconds": valid * CLIP_SECONDS, "clip_len": np.asarray(batch["clip_len"]),
          "duration": valid * CLIP_SECONDS, "num_real": valid, "num_valid": valid}


def model_outputs(config, bsz: int):
  """(host `Predictions` [bsz rows], per-row inputs) of one jitted forward of a fresh model."""
  from sg_detr_jax.training import steps as steps_lib  # noqa: PLC0415 (jax-heavy import)
  from sg_detr_jax.training.loop import build  # noqa: PLC0415
  batch = random_batch(config, bsz, varied=True)
  _, state, _, _ = build(config, 100)
  out = jax.device_get(steps_lib.make_predict_step(config)(state["params"], batch))
  return out, batch_rows(batch)


def golden_outputs(bsz: int, path: str = GOLDEN):
  """(host `Predictions`, per-row inputs): the official golden rows tiled to `bsz` rows."""
  from sg_detr_jax.porting.official_names import head_outputs  # noqa: PLC0415
  f = np.load(path)
  out = head_outputs(f, 4)
  out = out.replace(anchor_mask=np.ones(out.atss_logits.shape, bool))
  b = out.atss_logits.shape[0]
  idx = np.arange(bsz) % b
  tiled = {}
  for k, v in vars(out).items():
    if v is None or k == "anchors":
      tiled[k] = v
    elif k.startswith("pred_"):  # [N, B, ...]
      tiled[k] = np.asarray(v)[:, idx]
    else:
      tiled[k] = np.asarray(v)[idx]
  d = f["meta/duration"][idx]
  valid = (d / CLIP_SECONDS).astype(int)
  rows = {"span_seconds": d, "clip_len": np.full(bsz, CLIP_SECONDS), "duration": d,
          "num_real": valid, "num_valid": valid}
  return Predictions(**tiled), rows


def take(out: Predictions, rows: dict, n: int):
  """The first n rows of a batch of outputs and of its per-row inputs."""
  sliced = {}
  for k, v in vars(out).items():
    if v is None or k == "anchors":
      sliced[k] = v
    elif k.startswith("pred_"):
      sliced[k] = v[:, :n]
    else:
      sliced[k] = v[:n]
  return Predictions(**sliced), {k: v[:n] for k, v in rows.items()}


def postprocess(out: Predictions, rows: dict, pp):
  """One batch's post-processing, as `Predictor.predict_many` calls it."""
  idx = np.arange(len(rows["span_seconds"]))
  windows = batch_windows(out, idx, rows["span_seconds"], rows["clip_len"], rows["duration"], pp)
  sal = saliency_scores(out, idx, rows["num_real"], rows["num_valid"], pp)
  return windows, sal


def stream_times(forward, rows: dict, pp, batches: int, ahead: int, repeats: int) -> list[float]:
  """Seconds per batch of `batches` consecutive forward + post-processing calls run as
  launch.evaluate runs them (`inference/overlap.py`: the host post-processes batch n while the
  device computes the next `ahead` ones), for each of `repeats` runs after one warm-up run;
  `forward()` launches one jitted forward of `rows`' batch and returns without waiting."""
  def run():
    t = time.perf_counter()
    for _ in overlapped(range(batches), lambda _: forward(),
                        lambda _, out: postprocess(jax.device_get(out), rows, pp), ahead):
      pass
    return (time.perf_counter() - t) / batches

  run()
  return [run() for _ in range(repeats)]


def time_postprocess(out: Predictions, rows: dict, pp, repeats: int) -> dict:
  """{"median_s", "min_s", "max_s"} of `repeats` calls of `postprocess` (after one warm-up)."""
  postprocess(out, rows, pp)
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    postprocess(out, rows, pp)
    times.append(time.perf_counter() - t)
  return {"median_s": float(np.median(times)), "min_s": min(times), "max_s": max(times)}


def profile(out: Predictions, rows: dict, pp, repeats: int, top: int = 15) -> str:
  """cProfile of `repeats` calls, the `top` lines by own (tottime) time."""
  prof = cProfile.Profile()
  prof.enable()
  for _ in range(repeats):
    postprocess(out, rows, pp)
  prof.disable()
  s = io.StringIO()
  pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(top)
  return s.getvalue()


def list_sizes(out: Predictions, rows: dict, pp) -> str:
  """Mean list lengths (what the Python-level loops scale with)."""
  res, _ = postprocess(out, rows, pp)
  return ", ".join(f"{k} {np.mean([len(r[k]) for r in res]):.1f}" for k in res[0])


def define_flags() -> None:
  """The command line (defined only when this module is the program; see launch/cli.py)."""
  cli.define_config("configs/qvhighlights.py")
  flags.DEFINE_list("batch", ["32", "128"], "comma-separated batch sizes")
  flags.DEFINE_integer("repeats", 20, "timed calls per batch size (median, min, max)")
  flags.DEFINE_list("source", ["model", "golden"], "model outputs: model | golden")
  flags.DEFINE_list("profile", ["32"], "batch sizes to profile (cProfile, top 15 by own time)")


def main(argv) -> None:
  cli.no_positional_args(argv)
  config = flags.FLAGS.config
  pp = config.postprocess
  sizes = [int(b) for b in flags.FLAGS.batch]
  print(f"devices: {jax.devices()}; convention {pp.convention}")
  for source in flags.FLAGS.source:
    if source == "model":
      t = time.perf_counter()
      full, rows_full = model_outputs(config, max(sizes))
      print(f"[model] forward at batch {max(sizes)} (compile included) "
            f"{time.perf_counter() - t:.1f} s; {full.atss_logits.shape[1]} anchors")
    elif source == "golden":
      full, rows_full = golden_outputs(max(sizes))
    else:
      raise ValueError(f"--source: model | golden, not {source!r}")
    for bsz in sizes:
      out, rows = take(full, rows_full, bsz)
      r = time_postprocess(out, rows, pp, flags.FLAGS.repeats)
      print(f"[{source}] batch {bsz}: post-processing {1e3 * r['median_s']:.2f} ms median "
            f"(min {1e3 * r['min_s']:.2f}, max {1e3 * r['max_s']:.2f}; {flags.FLAGS.repeats} "
            f"calls); mean list lengths: {list_sizes(out, rows, pp)}", flush=True)
      if str(bsz) in flags.FLAGS.profile:
        print(profile(out, rows, pp, max(1, flags.FLAGS.repeats // 4)), flush=True)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
