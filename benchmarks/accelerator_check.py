"""The accelerator check behind benchmarks/accelerator_check.sh: one JSON with everything.

  python benchmarks/accelerator_check.py [--quick] [--out=accelerator_check.json] \
      [--dtypes=float32,bfloat16] [--batches=32,128] [--train_steps=200]

1. The devices (kind, count, platform).
2. `benchmarks/scale.py`'s train-step numbers at batch 32 and 128 in float32 and bfloat16 on the
   QVHighlights configuration (data-parallel over the local devices): median step seconds,
   compile seconds, the FLOPs of one step from XLA's cost analysis, achieved FLOP/s and the MFU
   estimate (achieved / the device's peak, from a table of dense bf16 / fp32 peaks; null for a
   device not in it, e.g. a CPU), the inference forward at the same batches, the forward plus the
   host post-processing of every row (what launch.evaluate runs), and peak memory. `--dtypes` and
   `--batches` choose and order the pairs (a short lease runs the one it needs most first).
3. A `--train_steps` (200) training on the synthetic data (configs/synthetic.py, generated on
   first use) with the mean training loss of its first and last 20 steps (a tenth of the steps
   when fewer than 200): `loss_went_down` must be true.

The JSON file is rewritten after every finished part, so a run stopped at its time limit still
leaves what it measured.

`--quick` (CI, CPU, a minute or two): the tiny config (one decoder layer) at batch 4 in float32,
2 timed steps, and a 12-step training on a small synthetic dataset made in a temporary folder;
`loss_went_down` is reported but not required (12 noisy steps).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
from absl import flags  # noqa: E402

import model_speed  # noqa: E402
import postprocess_speed  # noqa: E402
import scale  # noqa: E402
from launch import cli  # noqa: E402
from sg_detr_jax import sharding  # noqa: E402
from sg_detr_jax.inference.overlap import batches_ahead  # noqa: E402
from sg_detr_jax.losses import matching  # noqa: E402
from sg_detr_jax.training import steps as steps_lib  # noqa: E402
from sg_detr_jax.training.loop import build  # noqa: E402

# Dense peak FLOP/s per device (vendor figures, without sparsity): (bfloat16, float32). float32
# matmuls on NVIDIA GPUs run as TF32 under XLA's default precision, hence the TF32 peak there.
PEAK_FLOPS = {
    "H200": (989e12, 494e12), "H100": (989e12, 494e12), "A100": (312e12, 156e12),
    "L4": (121e12, 60e12), "A10": (125e12, 62.5e12),
    "TPU v6": (918e12, 918e12 / 4), "TPU v5p": (459e12, 459e12 / 4),
    "TPU v5 lite": (197e12, 197e12 / 4), "TPU v5e": (197e12, 197e12 / 4),
    "TPU v4": (275e12, 275e12 / 4),
}


# --quick: the tiny model with one decoder layer (every module still runs; compiles are the cost),
# at the feature widths of its small synthetic dataset and with the short training's optimizer:
# the timed steps and the short training then share one compiled train step and predict step.
QUICK_OVERRIDES = ("--config.model.decoder_layers=1", "--config.data.video_dim=32",
                   "--config.data.text_dim=24", "--config.optim.warmup_epochs=0",
                   "--config.optim.milestones=()", "--config.optim.lr=1e-3")


def peak_flops(device_kind: str, dtype: str) -> float | None:
  for name, (bf16, fp32) in PEAK_FLOPS.items():
    if name.lower() in device_kind.lower():
      return bf16 if dtype == "bfloat16" else fp32
  return None


def step_flops(config, bsz: int, mesh) -> float | None:
  """FLOPs of one train step (whole batch) from XLA's cost analysis of the lowered program, or of
  the compiled one where the backend analyses only that (the GPU: None from the lowered program,
  seen on an H200); the step was compiled just before, so that compile is a cache hit."""
  _, state, _, _ = build(config, 100)
  step_mesh, state, batch = scale.placed(config, mesh, state, model_speed.sized_batch(config, bsz))
  key = jax.random.key(0, impl=config.train.prng_impl)
  step = steps_lib.make_train_step(config, 100, step_mesh)
  lowered = steps_lib.train_step.lower(state, batch, key, **step.keywords)
  for analyse in (lowered.cost_analysis, lambda: lowered.compile().cost_analysis()):
    cost = analyse()
    if isinstance(cost, (list, tuple)):
      cost = cost[0] if cost else None
    if cost and cost.get("flops"):
      return float(cost["flops"])
  return None


def inference_numbers(config, bsz: int, steps: int, mesh, stream_batches: int = 4) -> dict:
  """Median seconds of the inference forward (scale.py's: outputs left on the device), of the
  forward up to its outputs on the host plus the official post-processing of every row
  (benchmarks/speed.py's forward+post), each after one warm-up call, and per batch of
  `stream_batches` consecutive ones run as launch.evaluate runs them (post-processing of one batch
  behind the next one's forward: speed.py's stream), from one built state."""
  forward, batch = scale.predict_call(config, bsz, mesh)
  rows = postprocess_speed.batch_rows(batch)

  def forward_post():
    return postprocess_speed.postprocess(jax.device_get(forward()), rows, config.postprocess)

  compile_s, forward_s = model_speed.timed(forward, steps)
  _, seconds = model_speed.timed(forward_post, steps)
  stream_s = statistics.median(postprocess_speed.stream_times(
      forward, rows, config.postprocess, stream_batches, batches_ahead(config), steps))
  return {"forward_s": forward_s, "compile_s": compile_s, "queries_per_s": bsz / forward_s,
          "forward_post_s": seconds, "forward_post_queries_per_s": bsz / seconds,
          "stream_s": stream_s, "stream_queries_per_s": bsz / stream_s}


def scale_numbers(config_path: str, batches, steps: int, overrides=(),
                  dtypes=("float32", "bfloat16"), result: dict | None = None,
                  save=lambda: None) -> dict:
  """Fills and returns `result` ({"dtype/batch": numbers}), calling `save()` after each pair."""
  # the host matcher's seconds (scale.py's timed solve), traced into the steps made below
  matching._solve = scale._timed_solve  # pylint: disable=protected-access
  mesh = sharding.make_mesh(cli.load_config(config_path).mesh, jax.local_devices())
  kind = jax.local_devices()[0].device_kind
  n = jax.local_device_count()
  res = {} if result is None else result
  for dtype in dtypes:
    for bsz in batches:
      config = cli.load_config(config_path, [*overrides, f"--config.model.dtype={dtype}"])
      with config.unlocked():
        t = scale.train_numbers(config, bsz, steps, mesh)
        flops = step_flops(config, bsz, mesh)
        infer = inference_numbers(config, bsz, steps, mesh)
      peak = peak_flops(kind, dtype)
      achieved = flops / t["step_s"] if flops else None
      res[f"{dtype}/{bsz}"] = {
          "dtype": dtype, "batch": bsz, **t, "step_flops": flops, "achieved_flops_per_s": achieved,
          "peak_flops_per_s": peak * n if peak else None,
          "mfu": achieved / (peak * n) if achieved and peak else None,
          "infer_forward_s": infer["forward_s"], "infer_compile_s": infer["compile_s"],
          "infer_queries_per_s": infer["queries_per_s"],
          "forward_post_s": infer["forward_post_s"],
          "forward_post_queries_per_s": infer["forward_post_queries_per_s"],
          "stream_s": infer["stream_s"], "stream_queries_per_s": infer["stream_queries_per_s"]}
      save()
      print(f"{dtype:9s} batch {bsz:4d}: step {t['step_s'] * 1e3:8.1f} ms, compile "
            f"{t['compile_s']:6.1f} s, MFU {res[f'{dtype}/{bsz}']['mfu']}, forward "
            f"{infer['forward_s'] * 1e3:.1f} ms, forward+post {infer['forward_post_s'] * 1e3:.1f} ms, "
            f"stream {infer['stream_s'] * 1e3:.1f} ms",
            file=sys.stderr,
            flush=True)
  return res


def short_training(quick: bool, workdir: str, steps: int = 200) -> dict:
  """`steps` steps (quick: 12) on synthetic data; the loss at the start and at the end."""
  from launch import train  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.training.loop import train_and_evaluate  # pylint: disable=g-import-not-at-top
  if quick:
    from data_prep import build_tfds, synthetic  # pylint: disable=g-import-not-at-top
    raw, data_dir = os.path.join(workdir, "raw"), os.path.join(workdir, "tfds")
    synthetic.generate(raw, num_train=24, num_val=8, seed=0, video_dim=32, text_dim=24)
    build_tfds.build("qvhighlights", [os.path.join(raw, "annotations")],
                     [os.path.join(raw, "video_features")], os.path.join(raw, "text_features"),
                     data_dir)
    config = cli.load_config("configs/tiny.py", [
        f"--config.data.data_dir={data_dir}",
        f"--config.data.gt_files.val={raw}/annotations/val.jsonl",
        "--config.train.max_steps=12", "--config.train.num_epochs=2", *QUICK_OVERRIDES])
    window = 3
  else:
    config = cli.load_config("configs/synthetic.py", [
        f"--config.train.max_steps={steps}", "--config.train.num_epochs=1000",
        "--config.train.eval_every_epochs=1000"])  # one evaluation, at the end
    train.ensure_synthetic(config)
    window = max(1, min(20, steps // 10))
  with config.unlocked():
    config.train.log_every_steps = 1
  run_dir = os.path.join(workdir, "run")
  t = time.perf_counter()
  train_and_evaluate(config, run_dir, progress=False)
  seconds = time.perf_counter() - t
  with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  losses = [r["loss"] for r in rows if r["split"] == "train"]
  first, last = (sum(losses[:window]) / window, sum(losses[-window:]) / window)
  return {"config": "configs/tiny.py" if quick else "configs/synthetic.py",
          "steps": len(losses), "seconds": seconds, "loss_first": first, "loss_last": last,
          "loss_went_down": last < first,
          "steady_step_s": None if len(losses) < 2 else (
              sum(1 / r["steps_per_sec"] for r in rows[1:] if r["split"] == "train"
                  and "steps_per_sec" in r) / (len(losses) - 1))}


def main(argv) -> None:
  cli.no_positional_args(argv)
  f = flags.FLAGS
  t0 = time.perf_counter()
  devices = jax.local_devices()
  print(f"devices: {jax.device_count()} x {devices[0].device_kind} ({jax.default_backend()})",
        file=sys.stderr, flush=True)
  result = {"quick": f.quick, "backend": jax.default_backend(),
            "device_kind": devices[0].device_kind, "device_count": jax.device_count(),
            "devices": [str(d) for d in devices], "jax": jax.__version__, "scale": {}}

  def save():
    result["total_seconds"] = time.perf_counter() - t0
    with open(f.out, "w", encoding="utf-8") as fh:
      json.dump(result, fh, indent=1)

  if f.quick:
    # float32 only: each (dtype, batch) pair is two compilations, the bulk of the quick run's time,
    # and the bf16 path is tested elsewhere (tests/test_model.py).
    scale_numbers("configs/tiny.py", (4,), 2, QUICK_OVERRIDES, ("float32",), result["scale"], save)
  else:
    scale_numbers("configs/qvhighlights.py", [int(b) for b in f.batches], 10, (), f.dtypes,
                  result["scale"], save)
  result["peak_memory"] = scale.peak_memory()
  with tempfile.TemporaryDirectory() as tmp:
    result["training"] = short_training(f.quick, tmp, f.train_steps)
  save()
  print(json.dumps(result, indent=1))
  if not f.quick and not result["training"]["loss_went_down"]:
    sys.exit(f"the {f.train_steps}-step training did not lower the loss")


if __name__ == "__main__":
  flags.DEFINE_bool("quick", False, "CI size: tiny config, CPU-friendly (about a minute)")
  flags.DEFINE_string("out", "accelerator_check.json", "where the JSON is written")
  flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "model dtypes to time, in this order")
  flags.DEFINE_list("batches", ["32", "128"], "train / inference batch sizes, in this order")
  flags.DEFINE_integer("train_steps", 200, "steps of the short synthetic training (not --quick)")
  cli.run(main)
