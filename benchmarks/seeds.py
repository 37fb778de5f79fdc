"""The main job over several seeds: does every seed learn, and how far apart are they?

  python benchmarks/seeds.py [--seeds=0,1,2,3,4] [--config=configs/synthetic.py] \
      [--workdir=workdirs/seeds] [--config.x=...]

Each seed runs `python -m launch.train --config C --config.seed=S` as its own process (the
README's main command with another seed: compile, training and the per-epoch evaluations counted
in its wall time), in `<workdir>/seed_<S>`; a finished run is not trained again, its metrics are
read back from its metrics.jsonl (and its wall time from wall_s.txt). Prints one JSON object: per seed the best-checkpoint metrics
(picked by `train.best_metric`, as training does), the MR mAP after every epoch and the wall time,
then mean and sample std over the seeds, next to the untrained cosine baseline of the same split.
From Python: `run(config_path, overrides, seeds, workdir)`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from launch import cli  # noqa: E402
from sg_detr_jax import jsonl  # noqa: E402

KEYS = ("MR-full-mAP", "MR-full-R1@0.5", "HL-min-VeryGood-mAP")


def run_seed(config_path: str, overrides: list[str], seed: int, workdir: str) -> dict:
  """Trains one seed (unless finished) and returns its summary."""
  wall = None
  if not os.path.isfile(os.path.join(workdir, "metrics.jsonl")):
    t = time.time()
    subprocess.run([sys.executable, "-m", "launch.train", "--config", config_path, "--workdir",
                    workdir, "--noprogress", f"--config.seed={seed}", *overrides],
                   cwd=REPO, check=True)
    wall = time.time() - t
    with open(os.path.join(workdir, "wall_s.txt"), "w") as f:
      f.write(f"{wall:.1f}\n")
  elif os.path.isfile(os.path.join(workdir, "wall_s.txt")):
    with open(os.path.join(workdir, "wall_s.txt")) as f:
      wall = float(f.read())
  config = cli.load_config(config_path, overrides)
  evals = [r for r in jsonl.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
           if config.train.best_metric in r]
  best = max(evals, key=lambda r: r[config.train.best_metric])
  return {"seed": seed, "wall_s": None if wall is None else round(wall, 1),
          "best": {k: round(float(best[k]), 2) for k in KEYS},
          "mr_map_per_epoch": [round(float(r[KEYS[0]]), 2) for r in evals]}


def run(config_path: str, overrides: list[str], seeds: list[int], workdir: str) -> dict:
  """Every seed's run (see `run_seed`), then mean and std; prints and returns one JSON object."""
  runs = [run_seed(config_path, overrides, s, os.path.join(workdir, f"seed_{s}")) for s in seeds]
  out = {"config": config_path, "overrides": overrides, "runs": runs, "mean": {}, "std": {}}
  for k in KEYS:
    values = np.array([r["best"][k] for r in runs])
    out["mean"][k] = round(float(values.mean()), 2)
    out["std"][k] = round(float(values.std(ddof=1)), 2) if len(values) > 1 else 0.0
  print(json.dumps(out, indent=1))
  return out


def define_flags() -> None:
  """The command line (defined only when this module is the program; see launch/cli.py)."""
  cli.define_config("configs/synthetic.py", "(passed on to each run)")
  flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "comma-separated seeds")
  flags.DEFINE_string("workdir", "workdirs/seeds", "one workdir per seed is made under it")


def main(argv) -> None:
  cli.no_positional_args(argv)
  config_path, overrides = cli.config_args()
  run(config_path, overrides, [int(s) for s in flags.FLAGS.seeds], flags.FLAGS.workdir)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
