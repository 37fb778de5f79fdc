"""Times the evaluation of the QVHighlights val sample predictions; prints seconds as JSON.

  python benchmarks/eval_speed.py [--shared ../shared] [--repeats 5] [--runs 5]

Three numbers, because users pay all of them:
* `eval_s_median`: `evaluate()` alone, in process (per style), after the files are loaded;
* `command_s`: the whole command `python -m sg_detr_jax.evaluation --pred P --gt GT --out M.json`
  as a fresh process (interpreter start-up, imports, JSON reading, validation, metrics, writing),
  median / min / max of `--runs` runs, and its speed-up against the official standalone script;
* `import_s` / `python_s`: a fresh process that only imports what the command imports (numpy
  included), and a bare `python -c pass`, to show how much of the command is start-up.
The machine is shared: run it under `nice -n 19` and read the spread, not just the median.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sg_detr_jax import jsonl  # pylint: disable=g-import-not-at-top
from sg_detr_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

# The official standalone evaluation script (Moment-DETR `standalone_eval/eval.py`) on the same two
# files, timed as a whole process on this 2-core machine (issue 20): the reference for the speed-up.
OFFICIAL_COMMAND_S = 10.5


def _time_process(argv, runs: int) -> dict:
  """Wall seconds of `runs` fresh processes (median, min, max); fails loudly if one fails."""
  times = []
  for _ in range(runs):
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, check=False)
    times.append(time.perf_counter() - t0)
    if proc.returncode:
      raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
  return {"median": round(statistics.median(times), 3), "min": round(min(times), 3),
          "max": round(max(times), 3), "runs": runs}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
  p.add_argument("--repeats", type=int, default=5, help="in-process evaluate() calls per style")
  p.add_argument("--runs", type=int, default=5, help="fresh processes per command timing")
  args = p.parse_args()
  qvh = os.path.join(args.shared, "reference", "qvhighlights")
  pred_path = os.path.join(qvh, "sample_val_preds.jsonl")
  gt_path = os.path.join(qvh, "highlight_val_release.jsonl")
  t0 = time.perf_counter()
  preds = jsonl.read_jsonl(pred_path)
  gt = jsonl.read_jsonl(gt_path)
  load_s = time.perf_counter() - t0
  evaluate(preds, gt, task="qvhighlights")  # warm-up: the metric modules (and numpy) load lazily
  times = {}
  for style in ("md", "cg"):
    runs = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      evaluate(preds, gt, task="qvhighlights", style=style)
      runs.append(time.perf_counter() - t0)
    times[style] = statistics.median(runs)

  with tempfile.TemporaryDirectory() as tmp:
    command = _time_process([sys.executable, "-m", "sg_detr_jax.evaluation", "--pred", pred_path,
                             "--gt", gt_path, "--out", os.path.join(tmp, "metrics.json")], args.runs)
  # What the command imports (numpy included), set up as the command sets itself up.
  imports = _time_process([sys.executable, "-c", (
      "import os; os.environ.setdefault('OPENBLAS_NUM_THREADS', '1'); "
      "import sg_detr_jax.evaluation.__main__, sg_detr_jax.evaluation.highlight, "
      "sg_detr_jax.evaluation.highlight_only")], args.runs)
  python = _time_process([sys.executable, "-c", "pass"], args.runs)
  print(json.dumps({
      "queries": len(preds), "load_s": round(load_s, 3),
      "eval_s_median": {k: round(v, 3) for k, v in times.items()},
      "command_s": command, "import_s": imports, "python_s": python,
      "official_command_s": OFFICIAL_COMMAND_S,
      "speedup_vs_official": {"median": round(OFFICIAL_COMMAND_S / command["median"], 1),
                              "worst_run": round(OFFICIAL_COMMAND_S / command["max"], 1)},
  }))


if __name__ == "__main__":
  main()
