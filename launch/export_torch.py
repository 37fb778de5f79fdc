"""Export a trained workdir as an official SG-DETR state_dict (the official parameter names and
layouts, plus the ATSS anchor buffers), so the PyTorch code can load and evaluate it.

  python -m launch.export_torch --workdir W --out X.pt|X.safetensors [--checkpoint best|latest|STEP]
"""

from __future__ import annotations

import argparse
import sys


def export(workdir: str, out: str, checkpoint: str = "best") -> int:
  """Writes the state_dict; returns the number of entries."""
  import jax  # pylint: disable=g-import-not-at-top

  from sg_detr_jax.inference.predictor import restore_workdir  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.porting import convert as convert_lib  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.porting.official_files import save_state_dict  # pylint: disable=g-import-not-at-top

  config, params = restore_workdir(workdir, checkpoint)
  state_dict = convert_lib.to_official(jax.device_get(params), config.model)
  save_state_dict(state_dict, out)
  return len(state_dict)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--workdir", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--checkpoint", default="best", help="best | latest | a step number")
  args = p.parse_args(argv)
  n = export(args.workdir, args.out, args.checkpoint)
  print(f"wrote {n} tensors to {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
