"""Config variants timed side by side in one process, their calls interleaved (A/B on a noisy VM).

  python benchmarks/interleaved.py --variants="model.matmul_dtype=float32;model.matmul_dtype=bfloat16" \
      [--batch=32] [--rounds=7] [--parts=train,forward] [--config=configs/qvhighlights.py]

Each variant is the base config (with its own `--config.x` overrides) plus one of the
`;`-separated groups of `,`-separated `key=value` overrides, parsed by `cli.load_config` as on the
command line. Every variant's jitted
train step (launch.train's: forward, host matcher, backward, AdamW) and inference forward are
compiled first; then each round calls every variant once, in turn, so that the machine's drift
(10-20 % on these shared VMs, over minutes) falls on all of them alike. Prints one JSON object: per
variant and part the median, min and max seconds over the rounds and the median's ratio to the
first variant's. (`benchmarks/speed.py` gives one configuration's numbers against the official
code; `benchmarks/xla_flags.py` compares XLA flags, which need a process each.)
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
from launch import cli  # noqa: E402
from sg_detr_jax.training import steps as steps_lib  # noqa: E402
from sg_detr_jax.training.loop import build  # noqa: E402


def variant_overrides(text: str) -> list[list[str]]:
  """"a.b=1,c.d=x;a.b=2" -> [["--config.a.b=1", "--config.c.d=x"], ["--config.a.b=2"]] ("" is
  the base config): overrides for `cli.load_config`, which parses each by its field's type."""
  return [[f"--config.{item.strip()}" for item in group.split(",") if item.strip()]
          for group in text.split(";")]


def calls(config, bsz: int, parts) -> dict:
  """{part: zero-argument function that runs one blocking call} of one variant (compiled)."""
  config.train.batch_size = bsz
  batch = model_speed.sized_batch(config, bsz)
  _, state, _, _ = build(config, 100)
  holder = {"state": state}  # the train step donates its state: read the current one
  out = {}
  if "forward" in parts:
    predict = steps_lib.make_predict_step(config)
    inputs = {k: batch[k] for k in ("video", "video_mask", "text", "text_mask")}
    out["forward"] = lambda: jax.block_until_ready(predict(holder["state"]["params"], inputs))
  if "train" in parts:
    train = steps_lib.make_train_step(config, 100)
    key = jax.random.key(0, impl=config.train.prng_impl)

    def train_call():
      holder["state"], metrics = train(holder["state"], batch, key)
      jax.block_until_ready(metrics["loss"])
    out["train"] = train_call
  for fn in out.values():
    fn()  # compile
  return out


def define_flags() -> None:
  cli.define_config("configs/qvhighlights.py")
  flags.DEFINE_string("variants", "model.matmul_dtype=float32;model.matmul_dtype=bfloat16",
                      "';'-separated variants of ','-separated key=value overrides")
  flags.DEFINE_integer("batch", 32, "batch size")
  flags.DEFINE_integer("rounds", 7, "timed calls of every variant, interleaved")
  flags.DEFINE_list("parts", ["train", "forward"], "train, forward")


def main(argv) -> None:
  cli.no_positional_args(argv)
  f = flags.FLAGS
  path, base = cli.config_args()
  variants = variant_overrides(f.variants)
  names = [",".join(o.removeprefix("--config.") for o in v) or "base" for v in variants]
  fns = {}
  for name, overrides in zip(names, variants):
    t = time.perf_counter()
    fns[name] = calls(cli.load_config(path, base + overrides), f.batch, f.parts)
    print(f"{name}: compiled in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
  times = {n: {p: [] for p in f.parts} for n in names}
  for _ in range(f.rounds):
    for part in f.parts:
      for n in names:
        t = time.perf_counter()
        fns[n][part]()
        times[n][part].append(time.perf_counter() - t)
  result = {"batch": f.batch, "rounds": f.rounds, "variants": {}}
  for n in names:
    result["variants"][n] = {
        p: {"median_s": round(statistics.median(ts), 4), "min_s": round(min(ts), 4),
            "max_s": round(max(ts), 4),
            "ratio_to_first": round(statistics.median(ts) /
                                    statistics.median(times[names[0]][p]), 3)}
        for p, ts in times[n].items()}
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
