"""A small inference API over a trained workdir: raw features in, windows (seconds) and clip scores out.

  from sg_detr_jax import Predictor
  predictor = Predictor.from_workdir("workdirs/synthetic")          # best checkpoint
  result = predictor.predict(video_features, text_features)        # [T, Dv], [L, Dt] numpy
  result.windows     # [N, 3] (start s, end s, score), WBF-fused, best first
  result.saliency    # clip scores (global saliency logits; higher = more relevant)

Inputs are the features as stored in the dataset's release (before the builder's L2
normalisation); the predictor applies the same normalisation, truncation, TEF and padding as the
input pipeline, so `predict` on a release's `.npz` gives what `launch.evaluate` gives for that query.
Queries are run in fixed-size batches (powers of two up to `config.train.eval_batch_size`), so at
most a handful of shapes are ever compiled.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import jax
import ml_collections
import numpy as np

from sg_detr_jax.data import targets
from sg_detr_jax.data.datasets import get_spec
from sg_detr_jax.data.pipeline import model_input_dims, static_video_len
from sg_detr_jax.inference.overlap import batches_ahead, overlapped
from sg_detr_jax.inference.postprocess import batch_windows, saliency_scores


@dataclasses.dataclass(frozen=True)
class Prediction:
  """One query's result.

  Attributes (lists as `config.postprocess` makes them, see inference/postprocess.py):
    windows: [N, 3] float64 (start s, end s, score) after WBF fusion of the DETR and ATSS heads.
    windows_detr: [N, 3] the DETR head alone (official convention: in class-probability order).
    saliency: float32 clip scores for the T clips given (after truncation to the config's
      max_video_clips): [T] (ranked convention) or, official, one per row the model marks valid
      (T rounded up to `data.pad_to_multiple` when padded rows are valid), through float16.
  """
  windows: np.ndarray
  windows_detr: np.ndarray
  saliency: np.ndarray


def _normalize(x: np.ndarray, eps: float) -> np.ndarray:
  return (x / (np.linalg.norm(x, axis=-1, keepdims=True) + eps)).astype(np.float32)


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (`<workdir>/config.json`, written by launch.train)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found: {workdir} is not a launch.train workdir")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def restore_workdir(workdir: str, checkpoint: str = "best"):
  """(config, params) of a workdir's `checkpoint` (best | latest | a step; best falls back to
  latest when nothing was evaluated)."""
  from sg_detr_jax.training.checkpoints import load_params  # pylint: disable=g-import-not-at-top
  from sg_detr_jax.training.loop import build  # pylint: disable=g-import-not-at-top

  config = load_workdir_config(workdir)
  _, state, _, _ = build(config, 1)
  _, params = load_params(workdir, state["params"], checkpoint)
  return config, params


class Predictor:
  """Jitted SG-DETR inference for raw (video, text) feature pairs."""

  def __init__(self, config, params, *, normalize_video: bool | None = None,
               normalize_text: bool | None = None, eps: float = 1e-5):
    """Args:
      config: the training config (model, data layout and post-processing are read from it).
      params: the model's nnx.State of Params.
      normalize_video / normalize_text: L2-normalise rows as the dataset builder did; None = the
        built dataset's metadata when `config.data.data_dir` is readable, else the dataset's
        convention (video yes; text per `datasets.DatasetSpec.normalize_text`).
      eps: the normaliser's epsilon (the builder's default).
    """
    from sg_detr_jax.training import steps as steps_lib  # pylint: disable=g-import-not-at-top
    from sg_detr_jax.models import sg_detr  # pylint: disable=g-import-not-at-top
    from flax import nnx  # pylint: disable=g-import-not-at-top

    self.config = config
    self.spec = get_spec(config.data.dataset)
    meta = self._dataset_metadata(config)
    self.normalize_video = (meta.get("normalize_video", True) if normalize_video is None
                            else normalize_video)
    self.normalize_text = (meta.get("normalize_text", self.spec.normalize_text)
                           if normalize_text is None else normalize_text)
    self.eps = float(meta.get("eps", eps))
    self.clip_len = float(meta.get("clip_len", self.spec.clip_len))
    self.params = params
    graphdef, _ = nnx.split(sg_detr.create(config), nnx.Param)
    self.predict_step = steps_lib.make_predict_step(config)
    self._static_len = static_video_len(config.data)
    self._dims = model_input_dims(config.data)

  @staticmethod
  def _dataset_metadata(config) -> dict:
    try:
      from sg_detr_jax.data.tfds_source import open_split  # pylint: disable=g-import-not-at-top
      return open_split(config.data.data_dir, config.data.dataset, config.data.eval_split)[1]
    except Exception:  # pylint: disable=broad-except  (no built dataset next to the checkpoint)
      return {}

  @classmethod
  def from_workdir(cls, workdir: str, checkpoint: str = "best", **kwargs) -> "Predictor":
    """Loads `<workdir>/config.json` and the `checkpoint` (best | latest | a step) params."""
    config, params = restore_workdir(workdir, checkpoint)
    return cls(config, params, **kwargs)

  # ---- one example ----------------------------------------------------------------------------
  def _example(self, video: np.ndarray, text: np.ndarray, duration: float | None, name: str):
    video = np.asarray(video, np.float32)
    text = np.asarray(text, np.float32)
    if text.ndim == 3 and text.shape[0] == 1:  # [1, L, D] as some extractors save it
      text = text[0]
    d = self.config.data
    for what, arr, dim in (("video", video, d.video_dim), ("text", text, d.text_dim)):
      if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name}: {what} features have shape {arr.shape}; this model expects "
                         f"[N, {dim}]")
      if len(arr) == 0:
        raise ValueError(f"{name}: {what} features are empty")
      if not np.isfinite(arr).all():
        raise ValueError(f"{name}: {what} features contain NaN or Inf")
    if self.normalize_video:
      video = _normalize(video, self.eps)
    if self.normalize_text:
      text = _normalize(text, self.eps)
    v, vmask, num_real, num_valid = targets.layout_video(
        video, max_clips=d.max_video_clips, pad_to_multiple=d.pad_to_multiple,
        padded_rows_valid=d.padded_rows_valid, use_tef=d.use_tef, static_len=self._static_len)
    t, tmask = targets.layout_text(text, d.max_text_tokens)
    if duration is None:
      duration = num_real * self.clip_len
    return {"video": v, "video_mask": vmask, "text": t, "text_mask": tmask,
            "span_seconds": np.float32(num_valid * self.clip_len), "duration": float(duration),
            "num_clips": num_real, "num_valid": num_valid}

  def _bucket(self, n: int) -> int:
    cap = int(self.config.train.eval_batch_size)
    size = 1
    while size < min(n, cap):
      size *= 2
    return min(size, cap)

  def predict_many(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                   durations: Sequence[float | None] | None = None) -> list[Prediction]:
    """Predictions for a list of (video [T, Dv], text [L, Dt]) pairs, batched on the device.

    `durations` (seconds) bounds the windows of the ranked convention; default: the number of
    clips x the clip length. The official convention bounds them by the constants of
    `config.postprocess` and the feature length (valid rows x clip length), as the official code.
    """
    durations = list(durations) if durations is not None else [None] * len(pairs)
    examples = [self._example(v, t, dur, f"pair {i}")
                for i, ((v, t), dur) in enumerate(zip(pairs, durations))]
    chunks, start = [], 0
    while start < len(examples):
      size = self._bucket(len(examples) - start)
      chunks.append((examples[start:start + size], size))
      start += size

    def launch(chunk_size):
      chunk, size = chunk_size
      rows = chunk + [chunk[-1]] * (size - len(chunk))  # pad to the bucket size
      return self.predict_step(self.params, {
          k: np.stack([e[k] for e in rows]) for k in ("video", "video_mask", "text", "text_mask")})

    def finish(chunk_size, out):
      chunk, _ = chunk_size
      out, pp, rows = jax.device_get(out), self.config.postprocess, np.arange(len(chunk))
      windows = batch_windows(out, rows, [e["span_seconds"] for e in chunk], self.clip_len,
                              [e["duration"] for e in chunk], pp)
      sal = saliency_scores(out, rows, [e["num_clips"] for e in chunk],
                            [e["num_valid"] for e in chunk], pp)
      return [Prediction(windows=w["fused"], windows_detr=w["detr"], saliency=s)
              for w, s in zip(windows, sal)]

    # The host post-processes a chunk while the device computes the next (inference/overlap.py).
    return [p for chunk in overlapped(chunks, launch, finish, batches_ahead(self.config))
            for p in chunk]

  def predict(self, video_features: np.ndarray, text_features: np.ndarray,
              duration: float | None = None) -> Prediction:
    """The prediction for one query: video [T, Dv], text [L, Dt] (or [1, L, Dt])."""
    return self.predict_many([(video_features, text_features)], [duration])[0]
