"""Parameter count per top-level module, total, and forward output shapes of a config's model.

  python -m launch.summary --config configs/qvhighlights.py [--json] [--batch 2] [--config.x=...]

From Python: `summarize(config)` returns the numbers, `print_summary(config)` prints them.
"""

from __future__ import annotations

import json

import jax
import numpy as np
from absl import flags

from launch import cli
from sg_detr_jax.data.random_batch import random_batch
from sg_detr_jax.models import atss, outputs, param_map, sg_detr
from sg_detr_jax.training import collab_size


def summarize(config, batch_size: int = 2) -> dict:
  """{"total_params", "modules": {name: count}, "outputs": {"train"/"eval": {key: shape}}}.

  A collab group sized from the training data (`model.collab_size` 0) gets the size a
  `random_batch` needs.
  """
  batch = random_batch(config, batch_size)
  if config.model.collab and config.model.collab_size <= 0:
    config = config.copy_and_resolve_references()
    config.model.collab_size = collab_size.batch_positives(config, batch)
  model = sg_detr.create(config)
  modules: dict[str, int] = {}
  for path, value in param_map.flat_params(model).items():
    top = path.split(".")[0]
    modules[top] = modules.get(top, 0) + int(np.prod(value.shape))
  shapes = {}
  targets = atss.training_targets(batch, config.model) if model.uses_atss else None
  for mode, train in (("eval", False), ("train", True)):
    out = jax.eval_shape(lambda b, k: model(b, key=k, train=train, atss_targets=targets), batch,
                         jax.random.key(0))
    shapes[mode] = {k: list(v.shape) for k, v in outputs.flatten(out).items()}
  return {"total_params": sum(modules.values()), "modules": modules, "outputs": shapes}


def print_summary(config, batch_size: int = 2, as_json: bool = False) -> dict:
  """Prints `summarize(config, batch_size)` as a table (or one JSON object) and returns it."""
  info = summarize(config, batch_size)
  if as_json:
    print(json.dumps(info, indent=1))
    return info
  width = max(len(k) for k in info["modules"])
  for name, count in info["modules"].items():
    print(f"{name:<{width}}  {count:>12,}")
  print(f"{'total':<{width}}  {info['total_params']:>12,}")
  for mode, shapes in info["outputs"].items():
    print(f"\n{mode} outputs (batch {batch_size}):")
    for k, v in shapes.items():
      print(f"  {k:<22} {tuple(v)}")
  return info


def define_flags() -> None:
  """The command line (defined only when this module is the program; see launch/cli.py)."""
  cli.define_config()
  flags.DEFINE_bool("json", False, "print one JSON object")
  flags.DEFINE_integer("batch", 2, "batch size for the output shapes")


def main(argv) -> None:
  cli.no_positional_args(argv)
  f = flags.FLAGS
  print_summary(f.config, f.batch, f.json)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
