"""Reading and writing official SG-DETR checkpoint files as {name: numpy array} state_dicts.

Accepted inputs: a plain `torch.save`d state_dict (`.pt`/`.pth`/`.bin`), a PyTorch Lightning
checkpoint (`.ckpt`, its `state_dict` entry, whose keys carry the LightningModule's attribute
prefix, e.g. `model.`), and `.safetensors`. Pickles are only ever opened with
`torch.load(weights_only=True)`, which refuses anything but tensors and plain containers, so a
checkpoint cannot run code on the machine that loads it.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np


def require_torch(why: str):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError(f"{why} needs PyTorch: pip install -e '.[torch]' (torch==2.13.0, the CPU "
                      "build)") from None
  return torch


def _to_numpy(value, key: str, path: str) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor
    value = value.detach().cpu()
    if str(value.dtype) == "torch.bfloat16":
      value = value.float()
    return value.numpy()
  if isinstance(value, np.ndarray):
    return value
  raise ValueError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")


def strip_prefix(state: dict, expected_roots: Iterable[str]) -> dict:
  """Drops a common module prefix (`model.`, `module.`, `net.`...) so keys start at the model root.

  The prefix is found, not guessed: the shortest `a.b.` head after which some key starts with one
  of `expected_roots` (the official top-level module names).
  """
  roots = tuple(f"{r}." for r in expected_roots)
  if any(k.startswith(roots) for k in state):
    return state
  prefixes = set()
  for k in state:
    parts = k.split(".")
    for i in range(1, len(parts)):
      if ".".join(parts[i:]).startswith(roots):
        prefixes.add(".".join(parts[:i]) + ".")
        break
  if len(prefixes) != 1:
    return state  # nothing consistent to strip; the converter reports the unknown keys
  (prefix,) = prefixes
  return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_state_dict(path: str, expected_roots: Iterable[str] = ()) -> dict[str, np.ndarray]:
  """{official key: array} from a checkpoint file (see the module docstring for formats)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"checkpoint not found: {path}")
  if path.endswith(".safetensors"):
    try:
      from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ImportError(f"{path}: reading .safetensors needs `pip install safetensors`") from None
    state = dict(load_file(path))
  else:
    torch = require_torch(f"reading {path}")
    try:
      obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pylint: disable=broad-except  (UnpicklingError and friends)
      raise ValueError(f"{path}: refused or unreadable as a weights-only PyTorch checkpoint "
                       f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
      obj = obj["state_dict"]  # Lightning checkpoint
    if not isinstance(obj, dict):
      raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(obj).__name__}")
    state = {str(k): _to_numpy(v, str(k), path) for k, v in obj.items()}
  return strip_prefix(state, expected_roots)


def save_state_dict(state: dict[str, np.ndarray], path: str) -> None:
  """Writes a plain torch state_dict (`.pt`) or `.safetensors`, atomically."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp"
  if path.endswith(".safetensors"):
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
    save_file({k: np.array(v, order="C") for k, v in state.items()}, tmp)
  else:
    torch = require_torch(f"writing {path}")
    torch.save({k: torch.from_numpy(np.array(v, order="C")) for k, v in state.items()}, tmp)
  os.replace(tmp, path)
