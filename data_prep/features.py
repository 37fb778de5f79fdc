"""Loading pre-extracted clip and token features (reference.md §2).

Two layouts (reference.md §2, issue "official feature release"):
* Moment-DETR / Lighthouse: `{vid}.npz` (key `features`, [T, D]) per video and feature folder, `{vid}.npy`
  as the CG-DETR fallback; text `qid{qid}.npz`, key `last_hidden_state`, [L, D] or [1, L, D].
* official SG-DETR release: `{vid}.pt`, a `torch.save`d float tensor [T, D] (read with
  `torch.load(weights_only=True)`, the optional `torch` extra); text `{qid}.npz`, key `features`.
Several video folders are each L2-normalised, cut to the shortest and concatenated along D.
Normalisation is x / (||x|| + eps) with the epsilon added to the norm, as every reference loader does.

A missing, truncated, empty or non-finite file raises `FeatureError` naming the file and the query.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np


class FeatureError(ValueError):
  """A feature file that cannot be used; the message names the file and the record."""


@dataclasses.dataclass(frozen=True)
class FeatureOptions:
  """How feature files are found and prepared.

  Attributes:
    video_dirs: folders of per-video files; their features are concatenated in this order.
    text_dir: folder of per-query files.
    video_key: array key in a video `.npz`.
    text_key: array key in a text `.npz`.
    text_pattern: text file name, `{qid}` substituted.
    normalize_video: L2-normalise every clip row (per folder, before concatenation).
    normalize_text: L2-normalise every token row.
    eps: added to the L2 norm.
  """
  video_dirs: tuple[str, ...]
  text_dir: str
  video_key: str = "features"
  text_key: str = "last_hidden_state"
  text_pattern: str = "qid{qid}.npz"
  normalize_video: bool = True
  normalize_text: bool = True
  eps: float = 1e-5


def l2_normalize(x: np.ndarray, eps: float) -> np.ndarray:
  """Row-wise x / (||x||_2 + eps) in float32."""
  return (x / (np.linalg.norm(x, axis=-1, keepdims=True) + eps)).astype(np.float32)


def load_array(path: str, key: str | None, what: str, allow_vector: bool = False) -> np.ndarray:
  """Loads one array from `.npz` (by key) or `.npy` and checks that it is a finite 2-D matrix.

  Args:
    path: the file.
    key: array name inside an `.npz` (ignored for `.npy`).
    what: "video features of vid X" / "text features of qid Y", for messages.
    allow_vector: accept a [D] vector too (returned as [1, D]).

  Returns:
    [N, D] float32 with N >= 1. A leading batch axis of size 1 ([1, N, D]) is squeezed.
  """
  if not os.path.isfile(path):
    raise FeatureError(f"{path}: missing file ({what})")
  try:
    if path.endswith(".pt"):
      arr = load_torch_tensor(path, what)
    elif path.endswith(".npy"):
      arr = np.load(path, allow_pickle=False)
    else:
      with np.load(path, allow_pickle=False) as npz:
        if key not in npz.files:
          raise FeatureError(f"{path}: no array {key!r} ({what}); it has {sorted(npz.files)}")
        arr = npz[key]
  except FeatureError:
    raise
  except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
    raise FeatureError(f"{path}: unreadable or truncated file ({what}): {e}") from None
  if arr.ndim == 3 and arr.shape[0] == 1:
    arr = arr[0]
  if arr.ndim == 1 and allow_vector:
    arr = arr[None]
  if arr.ndim != 2:
    raise FeatureError(f"{path}: expected a [N, D] matrix ({what}), got shape {arr.shape}")
  if arr.shape[0] == 0 or arr.shape[1] == 0:
    raise FeatureError(f"{path}: empty feature matrix {arr.shape} ({what})")
  arr = arr.astype(np.float32)
  if not np.all(np.isfinite(arr)):
    bad = np.argwhere(~np.isfinite(arr))[0]
    raise FeatureError(f"{path}: NaN/Inf at row {bad[0]}, column {bad[1]} ({what})")
  return arr


def load_torch_tensor(path: str, what: str) -> np.ndarray:
  """A tensor `torch.save`d to `path` (the official release's video features), as numpy.

  Only `torch.load(weights_only=True)`: a file that would need arbitrary unpickling is refused.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top  (optional extra)
  except ImportError:
    raise FeatureError(
        f"{path}: reading .pt features ({what}) needs torch: pip install -e '.[torch]', or convert "
        f"the folder once with `python -m data_prep.convert_features --from official "
        f"--to moment_detr ...` and drop torch") from None
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises many types (UnpicklingError, RuntimeError, EOFError)
    raise FeatureError(f"{path}: unreadable, truncated or not a plain tensor file ({what}): "
                       f"{type(e).__name__}: {str(e)[:200]}") from None
  if not isinstance(obj, torch.Tensor):
    raise FeatureError(f"{path}: expected a saved tensor ({what}), got {type(obj).__name__}")
  return obj.detach().cpu().numpy()


def video_path(folder: str, vid: str) -> str:
  """`{vid}.npz`, else `{vid}.npy` (the CG-DETR fallback), else `{vid}.pt` (the official
  release) when only that exists."""
  for ext in (".npz", ".npy", ".pt"):
    path = os.path.join(folder, f"{vid}{ext}")
    if os.path.exists(path):
      return path
  return os.path.join(folder, f"{vid}.npz")  # missing: the error names the default


def load_video(vid: str, opts: FeatureOptions) -> np.ndarray:
  """Video features of one video: [T, sum of D over folders] float32."""
  parts = []
  for folder in opts.video_dirs:
    arr = load_array(video_path(folder, vid), opts.video_key, f"video features of vid {vid!r}")
    parts.append(l2_normalize(arr, opts.eps) if opts.normalize_video else arr)
  length = min(p.shape[0] for p in parts)
  return np.concatenate([p[:length] for p in parts], axis=1)


def load_text(qid: str, opts: FeatureOptions) -> np.ndarray:
  """Token features of one query: [L, D] float32."""
  path = os.path.join(opts.text_dir, opts.text_pattern.format(qid=qid))
  arr = load_array(path, opts.text_key, f"text features of qid {qid!r}")
  return l2_normalize(arr, opts.eps) if opts.normalize_text else arr
