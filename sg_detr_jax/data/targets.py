"""Per-example training targets and feature layout (pure numpy; reference.md §2-3, architecture §2).

Everything here works on one example and returns fixed-shape arrays, so batches stack without
Python-side reshaping and the jitted step sees static shapes.
"""

from __future__ import annotations

import numpy as np


def round_up(n: int, multiple: int) -> int:
  """Smallest multiple of `multiple` that is >= n."""
  return -(-n // multiple) * multiple


def temporal_endpoint_features(num_clips: int) -> np.ndarray:
  """[T, 2] TEF rows (t / T, (t + 1) / T) for the real (unpadded) clip count T."""
  t = np.arange(num_clips, dtype=np.float32)
  return np.stack([t / num_clips, (t + 1) / num_clips], axis=1)


def layout_video(features: np.ndarray, *, max_clips: int, pad_to_multiple: int,
                 padded_rows_valid: bool, use_tef: bool, static_len: int):
  """Truncates, appends TEF, pads to a multiple and then to the static length.

  Follows the official SG-DETR convention (architecture.md §2, A12): TEF uses the real clip count;
  the zero rows added to reach a multiple of `pad_to_multiple` are marked valid when
  `padded_rows_valid`, and the span normaliser is then the padded length.

  Args:
    features: [T, D] clip features.
    max_clips: keep the first `max_clips` rows.
    pad_to_multiple: per-video padding multiple (the FPN's largest stride; 1 = none).
    padded_rows_valid: mark those padding rows valid (official) or not.
    use_tef: append the two temporal-endpoint features.
    static_len: final padded length of every example (>= round_up(max_clips, pad_to_multiple)).

  Returns:
    video [static_len, D (+2)], mask [static_len] bool, num_real (clips with features),
    num_valid (rows marked valid = the span normaliser in clips).
  """
  video = features[:max_clips]
  num_real = len(video)
  if use_tef:
    video = np.concatenate([video, temporal_endpoint_features(num_real)], axis=1)
  num_padded = round_up(num_real, pad_to_multiple)
  num_valid = num_padded if padded_rows_valid else num_real
  if num_padded > static_len:
    raise ValueError(f"{num_padded} clips do not fit the static length {static_len}")
  out = np.zeros((static_len, video.shape[1]), np.float32)
  out[:num_real] = video
  mask = np.zeros(static_len, bool)
  mask[:num_valid] = True
  return out, mask, num_real, num_valid


def layout_text(features: np.ndarray, max_tokens: int):
  """[max_tokens, D] tokens (first `max_tokens` kept, zero padded) and their [max_tokens] mask."""
  text = features[:max_tokens]
  out = np.zeros((max_tokens, features.shape[1]), np.float32)
  out[:len(text)] = text
  mask = np.zeros(max_tokens, bool)
  mask[:len(text)] = True
  return out, mask


def span_targets(windows: np.ndarray, span_seconds: float, max_windows: int,
                 rng: np.random.Generator | None):
  """Normalised (center, width) targets of up to `max_windows` windows.

  More windows than `max_windows`: a random subset in training (`rng` given), the first ones in
  evaluation. Normalised by the feature-length duration `span_seconds` (reference.md §3.1).

  Returns:
    spans [max_windows, 2] (c, w), mask [max_windows] bool.
  """
  windows = np.asarray(windows, np.float64).reshape(-1, 2)
  if len(windows) > max_windows:
    keep = rng.permutation(len(windows))[:max_windows] if rng is not None else np.arange(max_windows)
    windows = windows[np.sort(keep)]
  st, ed = windows[:, 0] / span_seconds, windows[:, 1] / span_seconds
  spans = np.zeros((max_windows, 2), np.float32)
  spans[:len(windows)] = np.stack([(st + ed) / 2, ed - st], axis=1)
  mask = np.zeros(max_windows, bool)
  mask[:len(windows)] = True
  return spans, mask


def saliency_label(saliency: np.ndarray, label_kind: str) -> np.ndarray:
  """Dense per-clip label y [T] (reference.md §3.2-3.4).

  QVHighlights: the sum of the 3 annotators (0..12); Charades-STA / TACoS / YouTube-HL: 0/1; TVSum:
  12 * sum(label - 1) / 80, rescaled to the QVHighlights range.
  """
  if label_kind == "tvsum":
    return (12.0 * np.clip(saliency - 1, 0, None).sum(axis=1) / (4.0 * saliency.shape[1])).astype(
        np.float32)
  return saliency.sum(axis=1).astype(np.float32)


def saliency_pairs(y: np.ndarray, relevant: np.ndarray, num_valid: int, pair_rule: str,
                   rng: np.random.Generator | None):
  """Positive and negative clip indices for the margin loss, 2 pairs per example.

  Rules (reference.md §3.2-3.4):
    "qvh": [hard_pos, easy_pos], [hard_neg, easy_neg]; hard = highest / lowest summed score among
      the relevant clips (stable sort), easy_pos = a random relevant clip, easy_neg = a random
      irrelevant clip (hard pair reused when every clip is relevant).
    "binary": 2 distinct random positives and 2 distinct random negatives (negatives := positives
      when fewer than 2 exist).
    "argmax": the highest- and lowest-labelled clip (a single pair, repeated).
  Without `rng` (evaluation) the random choices become the first candidates.

  Args:
    y: [T] dense labels (only the first `num_valid` entries are considered).
    relevant: [T] bool relevant-clip mask.
    num_valid: number of valid clips.
    pair_rule: one of the rules above.
    rng: per-example generator, or None.

  Returns:
    pos [2] int32, neg [2] int32.
  """
  y, relevant = y[:num_valid], relevant[:num_valid]
  rel_idx = np.nonzero(relevant)[0]
  irr_idx = np.nonzero(~relevant)[0]

  def choose(pool, k, replace=False):
    if rng is None:
      return pool[np.arange(k) % len(pool)]
    return rng.choice(pool, size=k, replace=replace)

  if pair_rule == "argmax" or len(rel_idx) == 0:
    order = np.argsort(y, kind="stable")
    pos, neg = [order[-1]] * 2, [order[0]] * 2
  elif pair_rule == "qvh":
    order = rel_idx[np.argsort(y[rel_idx], kind="stable")]
    hard_pos, hard_neg = order[-1], order[0]
    if len(irr_idx):
      pos = [hard_pos, choose(rel_idx, 1)[0]]
      neg = [hard_neg, choose(irr_idx, 1)[0]]
    else:
      pos, neg = [hard_pos, hard_pos], [hard_neg, hard_neg]
  elif pair_rule == "binary":
    pos = list(choose(rel_idx, 2)) if len(rel_idx) >= 2 else [rel_idx[0]] * 2
    neg = list(choose(irr_idx, 2)) if len(irr_idx) >= 2 else list(pos)
  else:
    raise ValueError(f"unknown saliency pair rule {pair_rule!r}")
  return np.asarray(pos, np.int32), np.asarray(neg, np.int32)
