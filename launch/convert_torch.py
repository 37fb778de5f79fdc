"""Convert an official PyTorch SG-DETR checkpoint into a workdir that launch.evaluate,
launch.predict and `sg_detr_jax.Predictor` load directly.

  python -m launch.convert_torch --checkpoint X.ckpt|X.pt|X.safetensors \
      --config configs/qvhighlights.py --out W [--config.model.x=...]

The file is opened with `torch.load(weights_only=True)` (needs the `torch` extra) or safetensors.
Every official key must map to a parameter of the model built from the config and every parameter
must be filled: otherwise the error lists unknown keys, missing keys and shape mismatches. The
result is an orbax checkpoint at step 0 of W (params + a fresh optimizer state) and W/config.json.
From Python: `convert(checkpoint, config, out)`.
"""

from __future__ import annotations

import json
import os

from absl import flags

from launch import cli

# The official model's top-level modules: used to find a Lightning prefix such as `model.`.
OFFICIAL_ROOTS = ("input_vid_proj", "input_txt_proj", "modality_embeddings", "txt_position_embed",
                  "local_saliency_head", "txt2vis_sal_encoder", "det_encoder",
                  "global_saliency_head", "fpn", "query_selector", "main_det_head", "aux_det_head",
                  "sent_encoder", "moment_encoder")


def convert(checkpoint: str, config, out: str) -> int:
  """Writes the converted workdir; returns the number of parameters converted."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from sg_detr_jax import jsonl  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.porting import convert as convert_lib  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.porting.official_files import load_state_dict  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.training.checkpoints import Checkpoints  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.training.loop import build  # pylint: disable=g-import-not-at-top

  state_dict = load_state_dict(checkpoint, OFFICIAL_ROOTS)
  _, state, _, _ = build(config, 1)
  params = convert_lib.from_official(state_dict, config.model, state["params"], where=checkpoint)
  state = dict(state, params=params)
  ckpts = Checkpoints(out)
  if ckpts.steps():
    raise FileExistsError(f"{out} already holds checkpoints {ckpts.steps()}; choose a new --out")
  ckpts.save(0, state, {}, config)
  ckpts.close()
  jsonl.write_json(os.path.join(out, "config.json"), json.loads(config.to_json()))
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def define_flags() -> None:
  """The command line (defined only when this module is the program; see launch/cli.py)."""
  flags.DEFINE_string("checkpoint", None, "the official checkpoint (.ckpt, .pt, .safetensors)")
  cli.define_config()
  flags.DEFINE_string("out", None, "the workdir to create")
  flags.mark_flags_as_required(["checkpoint", "out"])


def main(argv) -> None:
  cli.no_positional_args(argv)
  f = flags.FLAGS
  n = convert(f.checkpoint, f.config, f.out)
  print(f"converted {f.checkpoint}: {n:,} parameters -> {f.out} (checkpoint step 0)")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
