"""Loading pre-extracted clip and token features (reference.md §2).

Video: one `{vid}.npz` (key `features`, [T, D]) per video and feature folder, `{vid}.npy` as the
CG-DETR fallback; several folders are each L2-normalised, cut to the shortest and concatenated along D.
Text: one file per query (`qid{qid}.npz`, key `last_hidden_state`, [L, D] or [1, L, D]).
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


def load_array(path: str, key: str | None, what: str) -> np.ndarray:
  """Loads one array from `.npz` (by key) or `.npy` and checks that it is a finite 2-D matrix.

  Args:
    path: the file.
    key: array name inside an `.npz` (ignored for `.npy`).
    what: "video features of vid X" / "text features of qid Y", for messages.

  Returns:
    [N, D] float32 with N >= 1. A leading batch axis of size 1 ([1, N, D]) is squeezed.
  """
  if not os.path.isfile(path):
    raise FeatureError(f"{path}: missing file ({what})")
  try:
    if path.endswith(".npy"):
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
  if arr.ndim != 2:
    raise FeatureError(f"{path}: expected a [N, D] matrix ({what}), got shape {arr.shape}")
  if arr.shape[0] == 0 or arr.shape[1] == 0:
    raise FeatureError(f"{path}: empty feature matrix {arr.shape} ({what})")
  arr = arr.astype(np.float32)
  if not np.all(np.isfinite(arr)):
    bad = np.argwhere(~np.isfinite(arr))[0]
    raise FeatureError(f"{path}: NaN/Inf at row {bad[0]}, column {bad[1]} ({what})")
  return arr


def video_path(folder: str, vid: str) -> str:
  """`{vid}.npz`, or `{vid}.npy` when only that exists (the CG-DETR fallback)."""
  npz = os.path.join(folder, f"{vid}.npz")
  npy = os.path.join(folder, f"{vid}.npy")
  return npy if not os.path.exists(npz) and os.path.exists(npy) else npz


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
