"""Synthetic training batches with a config's static shapes: the one maker of model batches for
summaries, benchmarks and tests (the data pipeline makes the real ones)."""

from __future__ import annotations

import numpy as np

from sg_detr_jax.data.pipeline import model_input_dims, static_video_len

CLIP_SECONDS = 2.0


def random_batch(config, batch_size: int, seed: int = 0, *,
                 varied: bool = False) -> dict[str, np.ndarray]:
  """A numpy training batch in the pipeline's layout (data/pipeline.py) with N(0, 1) features.

  Every row: video then text features drawn from `seed`, one window (center 0.5, width 0.2),
  saliency 4 on the four middle clips, positive clips (L/2, L/2 + 1) and negatives (2, L - 3),
  2-s clips (span_seconds 2 L), its own source video; every clip and token is valid.

  varied: rows differ, to exercise masking and matching (needs L >= 17 clips and >= 6 tokens):
  odd rows have L - 8 valid clips, row i has 3 + (i mod 4) valid tokens, its window at
  (0.3 + 0.05 i, 0.1 + 0.02 i) plus a second one at (0.25, 0.1), saliency 4 on clips
  [2 + o, 6 + o) (o = i mod 4) with the first two of them positive and clips (0, 1) negative.

  Args:
    config: the full config (reads `config.data`).
    batch_size: B.
    seed: seed of the features.
    varied: see above.

  Returns:
    video [B, L, Dv], video_mask [B, L], text [B, T, Dt], text_mask [B, T], spans [B, W, 2],
    span_mask [B, W], saliency [B, L], pos_idx / neg_idx [B, 2], span_seconds / duration /
    clip_len [B], num_clips [B], batch_mask [B], source_id [B]: every key of the pipeline's
    batches (so a jitted step sees the same arguments, and compiles once for both).
  """
  d = config.data
  video_dim, text_dim = model_input_dims(d)
  length = static_video_len(d)
  rng = np.random.default_rng(seed)
  video = rng.normal(size=(batch_size, length, video_dim)).astype(np.float32)
  text = rng.normal(size=(batch_size, d.max_text_tokens, text_dim)).astype(np.float32)
  video_mask = np.ones((batch_size, length), bool)
  text_mask = np.ones((batch_size, d.max_text_tokens), bool)
  spans = np.zeros((batch_size, d.max_windows, 2), np.float32)
  span_mask = np.zeros((batch_size, d.max_windows), bool)
  span_mask[:, 0] = True
  saliency = np.zeros((batch_size, length), np.float32)
  mid = length // 2
  if not varied:
    spans[:, 0] = (0.5, 0.2)
    saliency[:, mid - 2:mid + 2] = 4
    pos = np.tile([[mid, mid + 1]], (batch_size, 1))
    neg = np.tile([[2, length - 3]], (batch_size, 1))
  else:
    pos = np.zeros((batch_size, 2), int)
    neg = np.tile([[0, 1]], (batch_size, 1))
    for i in range(batch_size):
      video_mask[i, length - 8 * (i % 2):] = False
      text_mask[i, 3 + i % 4:] = False
      spans[i, 0] = (0.3 + 0.05 * i, 0.1 + 0.02 * i)
      o = i % 4
      saliency[i, 2 + o:6 + o] = 4
      pos[i] = (2 + o, 3 + o)
    if d.max_windows > 1:
      spans[:, 1] = (0.25, 0.1)
      span_mask[:, 1] = True
  return {
      "video": video, "video_mask": video_mask, "text": text, "text_mask": text_mask,
      "spans": spans, "span_mask": span_mask, "saliency": saliency,
      "pos_idx": pos.astype(np.int32), "neg_idx": neg.astype(np.int32),
      "span_seconds": np.full(batch_size, length * CLIP_SECONDS, np.float32),
      "duration": np.full(batch_size, length * CLIP_SECONDS, np.float32),
      "clip_len": np.full(batch_size, CLIP_SECONDS, np.float32),
      "num_clips": video_mask.sum(axis=1).astype(np.int32),
      "batch_mask": np.ones(batch_size, bool),
      "source_id": np.arange(batch_size, dtype=np.int32),  # every row its own video
  }
