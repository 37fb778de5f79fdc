"""Where the time of one jitted train step (or inference forward) goes, by line of our source.

  python benchmarks/profile_step.py [--config=configs/qvhighlights.py] [--batch=32] [--steps=3] \
      [--predict] [--top=30] [--config.x=...]

Traces `--steps` calls of the compiled step with jax.profiler, sums the device time of every XLA
operation (thunk events carry the name of the entry-computation instruction they run) and
attributes each operation, through the compiled HLO's source metadata, to the innermost line of
`sg_detr_jax/` that produced it, split into forward and backward (ops under `transpose(...)`).
Prints one JSON object: step seconds, the share each of those lines takes, the share by
operation kind (dot, convolution, fusion, scatter, ...), and by source file.

It works on any backend whose runtime emits per-op trace events with an `hlo_op` stat (CPU and
GPU do). On CPU those events under-count XLA's convolutions, whose work runs on Eigen's thread pool
(the ATSS head timed alone: ~0.2 s of a 0.37 s forward; its lines here: ~0.06 s). Use it before
optimising: the step is one XLA program and Python timers cannot see into it.
From Python: `run(config, batch, steps, predict, top)`.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
from absl import flags  # noqa: E402
from jax.profiler import ProfileData  # noqa: E402

import model_speed  # noqa: E402
from launch import cli  # noqa: E402
from sg_detr_jax.training import steps as steps_lib  # noqa: E402
from sg_detr_jax.training.loop import build  # noqa: E402

PACKAGE = "sg_detr_jax/"  # source paths are shown relative to it
# Every dense product runs through models/matmul.py: attribute it to its caller, as a jnp.matmul.
SKIP = ("sg_detr_jax/models/matmul.py",)
_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = \S+ ([\w\-]+)\(")


def _table(hlo: str, header: str, pattern: str) -> dict:
  """One of the compiled HLO's source tables (FileNames, FileLocations, ...) as {id: match}."""
  out = {}
  m = re.search(rf"^{header}\n(.*?)(?:\n\n|\Z)", hlo, re.S | re.M)
  for line in (m.group(1).splitlines() if m else []):
    hit = re.match(rf"\s*(\d+) {pattern}", line)
    if hit:
      out[int(hit.group(1))] = hit.groups()[1:]
  return out


def source_label(frames, package: str = PACKAGE, skip: tuple[str, ...] = SKIP) -> str | None:
  """"layers.py:227 < detr_head.py:56" (a building block and who called it): the two innermost of
  `frames` ((file name, line) pairs, innermost first, read lazily) in files whose path contains
  `package`, shown relative to it, except files in `skip`; None when there is none. The rule both
  profile_step (time) and flops_by_line (FLOPs) attribute by."""
  ours = []
  for name, line in frames:
    if package in name and not name.endswith(skip):
      ours.append(f"{name[name.find(package) + len(package):]}:{line}")
      if len(ours) == 2:
        break
  return " < ".join(ours) if ours else None


def hlo_sources(hlo: str, package: str = PACKAGE, skip: tuple[str, ...] = SKIP) -> dict:
  """{instruction name: (opcode, source (see `where`), is_backward)} from a compiled module's text;
  sources are the frames in files whose path contains `package`, shown relative to it, except
  files in `skip` (the product primitives: an op is attributed to who multiplies)."""
  files = {k: v[0] for k, v in _table(hlo, "FileNames", r'"(.*)"').items()}
  locs = {k: (int(v[0]), int(v[1])) for k, v in
          _table(hlo, "FileLocations", r"\{file_name_id=(\d+) function_name_id=\d+ line=(\d+)").items()}
  frames = {k: (int(v[0]), int(v[1])) for k, v in
            _table(hlo, "StackFrames", r"\{file_location_id=(\d+) parent_frame_id=(\d+)").items()}

  def chain(frame_id: int):
    """(file name, line) of a stack frame and its callers, innermost first."""
    seen = set()
    while frame_id > 0 and frame_id in frames and frame_id not in seen:
      seen.add(frame_id)
      loc, parent = frames[frame_id]
      file_id, line = locs.get(loc, (0, 0))
      yield files.get(file_id, "?"), line
      # The HLO text prints parent_frame_id one above the parent's id, so a root frame prints 1
      # and the real parent is one less (0: none).
      frame_id = parent - 1

  def where(frame_id: int) -> str:
    """`source_label` of the frame's stack, else its innermost frame at all."""
    label = source_label(chain(frame_id), package, skip)
    if label:
      return label
    first = next(chain(frame_id), None)
    return f"{os.path.basename(first[0])}:{first[1]}" if first else "?"

  # Metadata of every instruction, and the root's metadata of every computation (a fusion
  # instruction often carries none itself; its fused computation's root does).
  meta, roots, calls, has_dot, current = {}, {}, {}, set(), None
  for line in hlo.splitlines():
    if line.startswith("%") or line.startswith("ENTRY"):
      current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
      continue
    m = _INSTR.match(line)
    if not m:
      continue
    name, opcode = m.groups()
    if opcode in ("dot", "convolution"):
      has_dot.add(current)
    op_name = re.search(r'op_name="([^"]*)"', line)
    frame = re.search(r"stack_frame_id=(\d+)", line)
    info = (opcode, op_name.group(1) if op_name else "", int(frame.group(1)) if frame else 0)
    meta[name] = info
    if "ROOT" in line.split("=")[0]:
      roots[current] = info
    called = re.search(r"calls=%?([\w.\-]+)", line)
    if called:
      calls[name] = called.group(1)
  out = {}
  for name, (opcode, op_name, frame) in meta.items():
    if not op_name and name in calls:
      _, op_name, frame = roots.get(calls[name], (opcode, "", 0))
    if opcode == "fusion":  # GEMM work fused with its neighbours, or elementwise / reduce only
      opcode = "fusion with dot" if calls.get(name) in has_dot else "fusion without dot"
    out[name] = (opcode, where(frame) if frame else "?", "transpose(" in op_name)
  return out


def op_times(trace_dir: str) -> dict:
  """{hlo_op: total seconds} over every per-op event of the trace in `trace_dir`."""
  path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))[-1]
  total = collections.Counter()
  for plane in ProfileData.from_file(path).planes:
    for line in plane.lines:
      for event in line.events:
        stats = dict(event.stats)
        if "hlo_op" in stats:
          total[stats["hlo_op"]] += event.duration_ns * 1e-9
  return total


def run(config, batch_size: int = 32, steps: int = 3, predict: bool = False, top: int = 30,
        label: str = "") -> dict:
  """Prints and returns the JSON object described above (`label`: its "config" entry)."""
  # Source locations keep 10 frames by default; Flax's call wrappers use most of them, so our
  # package's frame would be cut off.
  jax.config.update("jax_traceback_in_locations_limit", 64)
  config.train.batch_size = batch_size

  batch = model_speed.sized_batch(config, batch_size)
  graphdef, state, tx, schedule = build(config, 100)
  if predict:
    fn = steps_lib.make_predict_step(config)
    batch = {k: batch[k] for k in ("video", "video_mask", "text", "text_mask")}
    call_args = (state["params"], batch)
    step = lambda: fn(*call_args)  # noqa: E731
  else:
    fn = steps_lib.make_train_step(config, 100)
    key = jax.random.key(0, impl=config.train.prng_impl)
    holder = [state]
    call_args = (state, batch, key)

    def step():
      holder[0], metrics = fn(holder[0], batch, key)
      return metrics
  # make_*_step return a functools.partial of the jitted function (static config bound).
  hlo = fn.func.lower(*call_args, **fn.keywords).compile().as_text()
  jax.block_until_ready(step())  # compile (the lowering above is not the cached executable)
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    t = time.perf_counter()
    for _ in range(steps):
      jax.block_until_ready(step())
    wall = (time.perf_counter() - t) / steps
    jax.profiler.stop_trace()
    times = op_times(trace_dir)

  sources = hlo_sources(hlo)
  by_line, by_kind, by_file = collections.Counter(), collections.Counter(), collections.Counter()
  elementwise = collections.Counter()  # by line, only fusions without a dot (memory-bound work)
  for op, seconds in times.items():
    opcode, where, backward = sources.get(op, ("?", "?", False))
    seconds /= steps
    by_line[f"{'bwd' if backward else 'fwd'} {where}"] += seconds
    if opcode == "fusion without dot":
      elementwise[f"{'bwd' if backward else 'fwd'} {where}"] += seconds
    by_kind[opcode] += seconds
    by_file[where.split(":")[0]] += seconds  # the innermost file of our package
  op_total = sum(by_line.values())
  share = lambda c, n=None: {k: round(v / op_total, 4) for k, v in c.most_common(n)}  # noqa: E731
  result = {
      "config": label, "batch": batch_size, "mode": "predict" if predict else "train",
      "step_s": round(wall, 4), "op_seconds": round(op_total, 4),
      "note": "op_seconds sums per-op time over threads; shares are of op_seconds",
      "by_line": share(by_line, top), "by_kind": share(by_kind, 15),
      "by_line_fusions_without_dot": share(elementwise, top),
      "by_file": share(by_file, 20)}
  print(json.dumps(result, indent=1))
  return result


def define_flags() -> None:
  """The command line (defined only when this module is the program; see launch/cli.py)."""
  cli.define_config("configs/qvhighlights.py")
  flags.DEFINE_integer("batch", 32, "batch size")
  flags.DEFINE_integer("steps", 3, "traced calls after the compile")
  flags.DEFINE_bool("predict", False, "profile the inference forward instead")
  flags.DEFINE_integer("top", 30, "source lines listed")


def main(argv) -> None:
  cli.no_positional_args(argv)
  f = flags.FLAGS
  run(f.config, f.batch, f.steps, f.predict, f.top, label=cli.config_args()[0])


if __name__ == "__main__":
  define_flags()
  cli.run(main)
