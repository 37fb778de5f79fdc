"""What a run was made with: seed, package versions, git commit, devices (W/provenance.json).

Every start of `train_and_evaluate` on a workdir appends one entry, so a resumed run also records the
environment it resumed in.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

import jax

from sg_detr_jax import jsonl

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy",
            "tensorflow-datasets", "grain", "ml-collections", "array-record")


def git_commit(path: str | None = None) -> dict:
  """{"commit": sha or "unknown", "dirty": bool | None} of the checkout holding this package."""
  path = path or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  try:
    sha = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True,
                         text=True, timeout=10, check=True).stdout.strip()
    status = subprocess.run(["git", "-C", path, "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, timeout=10, check=True).stdout
    return {"commit": sha, "dirty": bool(status.strip())}
  except (OSError, subprocess.SubprocessError):
    return {"commit": "unknown", "dirty": None}  # an installed copy, not a checkout


def collect(seed: int) -> dict:
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return {
      "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "seed": seed, "python": sys.version.split()[0], "platform": platform.platform(),
      "packages": versions, "git": git_commit(),
      "devices": [str(d) for d in jax.devices()], "process_count": jax.process_count(),
  }


def record(workdir: str, seed: int) -> dict:
  """Appends this run's provenance to `workdir/provenance.json` and returns it."""
  path = os.path.join(workdir, "provenance.json")
  runs = []
  if os.path.isfile(path):
    with open(path, encoding="utf-8") as f:
      runs = json.load(f)["runs"]
  entry = collect(seed)
  jsonl.write_json(path, {"runs": runs + [entry]})
  return entry
