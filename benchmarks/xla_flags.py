"""XLA flags against the default: seconds per inference forward and train step, one process each.

  python benchmarks/xla_flags.py [--batch=32] [--steps=5] [--rounds=2] [--parts=infer,train] \
      [--candidates=NAME,...] [--config=configs/qvhighlights.py]

Every candidate is a set of `XLA_FLAGS` (CANDIDATES below; "default" is none). Each one runs
`benchmarks/model_speed.py` in a fresh process (XLA reads its flags once per process), and the
candidates are interleaved over `--rounds` rounds so that the machine's drift (10-20 % on a shared
VM) hits them alike. Prints each run as it ends, then one JSON object: per candidate the median,
min and max over the rounds of each part's median-of-`--steps` seconds, and its ratio to default.
A flag this XLA build does not know fails the run: the script reports it and goes on.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys

from absl import app, flags

HERE = os.path.dirname(os.path.abspath(__file__))
CANDIDATES = {
    "default": "",
    # AVX-512 code generation instead of XLA's 256-bit preference (the CPU here has AVX-512).
    "vector_width_512": "--xla_cpu_prefer_vector_width=512",
    # Dots and their fusions through XNNPACK / oneDNN instead of XLA's own Eigen-based kernels.
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "onednn": "--xla_cpu_use_onednn=true",
    "xnn_graph_fusion": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    # The library fusions by kind: dots (with their elementwise neighbours) and elementwise ops.
    "xnn_dot": "--xla_cpu_experimental_xnn_fusion_type=LIBRARY_FUSION_TYPE_DOT",
    "ynn_dot": "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT",
    "onednn_dot": "--xla_cpu_experimental_onednn_fusion_type=LIBRARY_FUSION_TYPE_DOT",
    "ynn_dot_eltwise": ("--xla_cpu_experimental_ynn_fusion_type="
                        "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE"),
    # No concurrency-optimised scheduling (it trades memory for overlap between independent ops).
    "no_concurrency_scheduler": "--xla_cpu_enable_concurrency_optimized_scheduler=false",
}

flags.DEFINE_list("batch", ["32"], "batch sizes")
flags.DEFINE_integer("steps", 5, "timed calls per run after the compile (median)")
flags.DEFINE_integer("rounds", 2, "runs of every candidate, interleaved")
flags.DEFINE_list("parts", ["infer", "train"], "infer, train")
flags.DEFINE_list("candidates", list(CANDIDATES), "names from CANDIDATES")
flags.DEFINE_string("config", "configs/qvhighlights.py", "config file")

_LINE = re.compile(r"batch (\d+): (inference forward|train step) ([0-9.]+) s")


def one_run(name: str) -> dict | str:
  """{"infer/32": s, "train/32": s, ...} of one process with the candidate's flags, or the error."""
  f = flags.FLAGS
  env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " +
                                    CANDIDATES[name]).strip())
  cmd = [sys.executable, os.path.join(HERE, "model_speed.py"), f"--config={f.config}",
         f"--batch={','.join(f.batch)}", f"--steps={f.steps}", f"--parts={','.join(f.parts)}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                        cwd=os.path.dirname(HERE))
  if proc.returncode:
    return (proc.stdout + proc.stderr)[-600:]
  return {("infer" if what.startswith("inference") else "train") + "/" + b: float(s)
          for b, what, s in _LINE.findall(proc.stdout)}


def main(argv) -> None:
  del argv
  names = flags.FLAGS.candidates
  unknown = sorted(set(names) - set(CANDIDATES))
  if unknown:
    raise app.UsageError(f"unknown candidates {unknown}; known: {sorted(CANDIDATES)}")
  runs = {n: [] for n in names}
  errors = {}
  for r in range(flags.FLAGS.rounds):
    for n in names:
      if n in errors:
        continue
      out = one_run(n)
      if isinstance(out, str):
        errors[n] = out
        print(f"round {r} {n}: failed: {out[-300:]}", flush=True)
        continue
      runs[n].append(out)
      print(f"round {r} {n}: {out}", flush=True)
  summary = {}
  base = runs.get("default") or []
  for n, rs in runs.items():
    if not rs:
      continue
    summary[n] = {"flags": CANDIDATES[n]}
    for part in rs[0]:
      xs = [x[part] for x in rs]
      row = {"median_s": round(statistics.median(xs), 3), "min_s": round(min(xs), 3),
             "max_s": round(max(xs), 3)}
      if base and part in base[0]:
        row["vs_default"] = round(statistics.median(xs) / statistics.median(
            [x[part] for x in base]), 3)
      summary[n][part] = row
  print(json.dumps({"results": summary, "failed": {k: v[-300:] for k, v in errors.items()}},
                   indent=1))


if __name__ == "__main__":
  app.run(main)
