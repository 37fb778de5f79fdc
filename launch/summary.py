"""Parameter count per top-level module, total, and forward output shapes of a config's model.

  python -m launch.summary --config configs/qvhighlights.py [--json] [--batch 2]
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import numpy as np

from launch import config_flags
from sg_detr_jax.data.pipeline import model_input_dims, static_video_len
from sg_detr_jax.models import param_map, sg_detr
from sg_detr_jax.training import collab_size


def dummy_batch(config, batch_size: int) -> dict[str, np.ndarray]:
  """A fixed-shape all-valid training batch of zeros (shapes only matter here)."""
  d = config.data
  video_dim, text_dim = model_input_dims(d)
  length = static_video_len(d)
  spans = np.zeros((batch_size, d.max_windows, 2), np.float32)
  spans[:, 0] = (0.5, 0.2)
  span_mask = np.zeros((batch_size, d.max_windows), bool)
  span_mask[:, 0] = True
  saliency = np.zeros((batch_size, length), np.float32)
  saliency[:, length // 2 - 2: length // 2 + 2] = 4
  return {
      "video": np.zeros((batch_size, length, video_dim), np.float32),
      "video_mask": np.ones((batch_size, length), bool),
      "text": np.zeros((batch_size, d.max_text_tokens, text_dim), np.float32),
      "text_mask": np.ones((batch_size, d.max_text_tokens), bool),
      "spans": spans, "span_mask": span_mask, "saliency": saliency,
      "span_seconds": np.full(batch_size, length * 2.0, np.float32),
      "clip_len": np.full(batch_size, 2.0, np.float32),
      "batch_mask": np.ones(batch_size, bool),
      "source_id": np.arange(batch_size, dtype=np.int32),  # every row its own video
  }


def summarize(config, batch_size: int = 2) -> dict:
  """{"total_params", "modules": {name: count}, "outputs": {"train"/"eval": {key: shape}}}.

  A collab group sized from the training data (`model.collab_size` 0) gets the size the dummy
  batch needs.
  """
  batch = dummy_batch(config, batch_size)
  if config.model.collab and config.model.collab_size <= 0:
    config = config.copy_and_resolve_references()
    config.model.collab_size = collab_size.batch_positives(config, batch)
  model = sg_detr.create(config)
  modules: dict[str, int] = {}
  for path, value in param_map.flat_params(model).items():
    top = path.split(".")[0]
    modules[top] = modules.get(top, 0) + int(np.prod(value.shape))
  shapes = {}
  for mode, train in (("eval", False), ("train", True)):
    out = jax.eval_shape(lambda b, k: model(b, key=k, train=train), batch, jax.random.key(0))
    shapes[mode] = {k: list(v.shape) for k, v in out.items()}
  return {"total_params": sum(modules.values()), "modules": modules, "outputs": shapes}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--config", required=True, help="configs/<name>.py")
  p.add_argument("--json", action="store_true", help="print one JSON object")
  p.add_argument("--batch", type=int, default=2, help="batch size for the output shapes")
  args, overrides = p.parse_known_args(argv)
  config = config_flags.load(args.config, overrides)
  info = summarize(config, args.batch)
  if args.json:
    print(json.dumps(info, indent=1))
    return 0
  width = max(len(k) for k in info["modules"])
  for name, count in info["modules"].items():
    print(f"{name:<{width}}  {count:>12,}")
  print(f"{'total':<{width}}  {info['total_params']:>12,}")
  for mode, shapes in info["outputs"].items():
    print(f"\n{mode} outputs (batch {args.batch}):")
    for k, v in shapes.items():
      print(f"  {k:<22} {tuple(v)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
