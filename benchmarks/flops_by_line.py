"""How many FLOPs of the train step (or inference forward) each source line's products cost.

  python benchmarks/flops_by_line.py [--config=configs/qvhighlights.py] [--batch=32] [--predict] \
      [--top=30] [--config.x=...]

Walks the step's jaxpr (no compile, no run: seconds) and counts 2 x the multiply-adds of every
`dot_general` and `conv_general_dilated`, sub-jaxprs included (jit, custom VJPs, a scan's body times
its length), and attributes each product to the two innermost frames of `sg_detr_jax/` that traced
it, as `benchmarks/profile_step.py` does for time (the products of `models/matmul.py` count as
their caller's). The backward's products come from the same lines as the forward's they transpose,
so a train step's line holds its forward and backward products together. Prints one JSON object:
total GFLOP, GFLOP by file and by line.

Where time is FLOP-bound (the fp32 step on a CPU: products at ~150-170 GFLOP/s), this says which
work to cut before anything is timed: it found the alignment branches' thrown-away rows (264.6 ->
247.4 GFLOP at batch 32) and the ATSS stems' share of the forward (21.5 of 57.2 GFLOP). Elementwise
work is not counted (XLA's own `cost_analysis` sums everything, per program only).
From Python: `count(fn, *args)` for any function, `run(config, batch, predict, top)` for the model.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
from absl import flags  # noqa: E402
from jax.extend import core as jex_core  # noqa: E402

import model_speed  # noqa: E402
import profile_step  # noqa: E402
from launch import cli  # noqa: E402
from sg_detr_jax.training import steps as steps_lib  # noqa: E402
from sg_detr_jax.training.loop import build  # noqa: E402

def _where(eqn, outer: str, package: str, skip: tuple[str, ...]) -> str:
  """`profile_step.source_label` of the frames that traced `eqn`; `outer` (the enclosing
  equation's) when none is ours (a custom VJP's inner jaxpr)."""
  tb = eqn.source_info.traceback
  frames = ((f.file_name, f.line_num) for f in (tb.frames if tb is not None else []))
  return profile_step.source_label(frames, package, skip) or outer


def _product_flops(eqn) -> int:
  """2 x multiply-adds of a dot_general / conv_general_dilated equation (0 for anything else)."""
  out = eqn.outvars[0].aval.shape
  if eqn.primitive.name == "dot_general":
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    return 2 * math.prod(out) * math.prod(lhs[i] for i in lhs_contract)
  if eqn.primitive.name == "conv_general_dilated":
    rhs = eqn.invars[1].aval.shape
    out_features = eqn.params["dimension_numbers"].rhs_spec[0]
    # Each output element: (input features / groups) x kernel taps multiply-adds.
    return 2 * math.prod(out) * math.prod(rhs) // rhs[out_features]
  return 0


def _sub_jaxprs(eqn):
  for value in eqn.params.values():
    for v in (value if isinstance(value, (tuple, list)) else (value,)):
      if isinstance(v, jex_core.ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, jex_core.Jaxpr):
        yield v


def _walk(jaxpr, counts: collections.Counter, times: int, outer: str, package, skip) -> None:
  for eqn in jaxpr.eqns:
    where = _where(eqn, outer, package, skip)
    counts[where] += times * _product_flops(eqn)
    inner = times * (eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1)
    for sub in _sub_jaxprs(eqn):
      _walk(sub, counts, inner, where, package, skip)


def count(fn, *args, package: str = profile_step.PACKAGE,
          skip: tuple[str, ...] = profile_step.SKIP, **kwargs) -> collections.Counter:
  """{'file:line < file:line': FLOPs} of the products `fn(*args, **kwargs)` traces."""
  counts = collections.Counter()
  _walk(jax.make_jaxpr(functools.partial(fn, **kwargs))(*args).jaxpr, counts, 1, "?", package,
        skip)
  return collections.Counter({k: v for k, v in counts.items() if v})


def run(config, batch_size: int, predict: bool, top: int, label: str = "") -> dict:
  batch = model_speed.sized_batch(config, batch_size)
  # Shapes only: the count traces, it never runs, so the state is not initialised.
  state = jax.eval_shape(lambda: build(config, 100)[1])
  if predict:
    step = steps_lib.make_predict_step(config)
    inputs = {k: batch[k] for k in ("video", "video_mask", "text", "text_mask")}
    counts = count(step.func, state["params"], inputs, **step.keywords)
  else:
    step = steps_lib.make_train_step(config, 100)
    key = jax.random.key(0, impl=config.train.prng_impl)
    counts = count(step.func, state, batch, key, **step.keywords)
  by_file = collections.Counter()
  for where, flops in counts.items():
    by_file[where.split(":")[0]] += flops
  giga = lambda c, n=None: {k: round(v / 1e9, 3) for k, v in c.most_common(n)}  # noqa: E731
  result = {"config": label, "batch": batch_size, "mode": "predict" if predict else "train",
            "total_flops": int(sum(counts.values())),
            "total_gflop": round(sum(counts.values()) / 1e9, 2), "by_file": giga(by_file),
            "by_line": giga(counts, top)}
  print(json.dumps(result, indent=1))
  return result


def define_flags() -> None:
  """The command line (defined only when this module is the program; see launch/cli.py)."""
  cli.define_config("configs/qvhighlights.py")
  flags.DEFINE_integer("batch", 32, "batch size")
  flags.DEFINE_bool("predict", False, "count the inference forward instead of the train step")
  flags.DEFINE_integer("top", 30, "source lines listed")


def main(argv) -> None:
  cli.no_positional_args(argv)
  f = flags.FLAGS
  run(f.config, f.batch, f.predict, f.top, label=cli.config_args()[0])


if __name__ == "__main__":
  define_flags()
  cli.run(main)
