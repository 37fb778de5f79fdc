"""The collab query group's size, from the training data (issue: never drop ATSS positives).

The official Co-DETR group of a batch has max_b |P_b| slots (P_b = the ATSS positives of sample
b), a size that changes from batch to batch. Our group has a static shape, so it gets the largest
|P_b| of any training example: then no batch ever has more positives than slots. The ATSS
assignment depends only on the ground truth and the anchors, so this needs no model.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sg_detr_jax.data.pipeline import ExampleProcessor
from sg_detr_jax.data.tfds_source import open_split
from sg_detr_jax.models import atss
from sg_detr_jax.models.fpn import FPN, STRIDES

_CHUNK = 256  # examples per jitted assignment call


def batch_positives(config, batch: dict) -> int:
  """max_b |P_b| of one batch (numpy arrays in the pipeline's layout): the official collab group
  size for it. Each example is assigned twice, over its own valid rows and over the whole static
  grid (the official candidates come from the batch's padded grid, which lies between the two),
  with the same GT conversion and top-k as the training step (`atss.batch_targets`)."""
  m = config.model
  anchors_np, level = atss.make_anchors(batch["video_mask"].shape[1], STRIDES, m.anchor_sizes)
  level_sizes = tuple(int(n) for n in np.bincount(level))
  return int(_count(jnp.asarray(anchors_np), level_sizes, m.atss_top_k, m.atss_gt_tolerance,
                    *(jnp.asarray(batch[k]) for k in _KEYS)))


_KEYS = ("spans", "span_mask", "span_seconds", "clip_len", "video_mask")


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _count(anchors, level_sizes, top_k, tolerance, spans, span_mask, span_seconds, clip_len,
           video_mask):
  def positives(rows):
    mask = jnp.concatenate(FPN.level_masks(rows), axis=1)
    labels, _ = atss.batch_targets(spans, span_mask, span_seconds, clip_len, anchors, level_sizes,
                                   mask, top_k, tolerance)
    return labels.sum(axis=1)
  return jnp.maximum(positives(video_mask), positives(jnp.ones_like(video_mask))).max()


def max_positives(config) -> int:
  """max over the training split of the number of ATSS positives of one example."""
  d = config.data
  source, metadata = open_split(d.data_dir, d.dataset, d.train_split)
  processor = ExampleProcessor(d, metadata, train=False)  # the first max_windows windows
  best = 0
  for start in range(0, len(source), _CHUNK):
    examples = [processor(source[i]) for i in range(start, min(start + _CHUNK, len(source)))]
    # Pad the last chunk with copies of its first example (one compiled shape).
    examples += examples[:1] * (_CHUNK - len(examples))
    best = max(best, batch_positives(config, {k: np.stack([e[k] for e in examples])
                                              for k in _KEYS}))
  return best


def resolve(config) -> int:
  """Sets `config.model.collab_size` from the data when it is 0; returns the size used.

  A size set by hand that is smaller than the data needs is refused: the group would silently
  lose positives.
  """
  m = config.model
  if not m.collab:
    return 0
  needed = max_positives(config)
  if m.collab_size <= 0:
    m.collab_size = max(needed, 1)
  elif m.collab_size < needed:
    raise ValueError(
        f"model.collab_size = {m.collab_size}, but a training example of {config.data.data_dir} "
        f"has {needed} ATSS positives: the collab group would drop positives. Set "
        f"--config.model.collab_size=0 (size from the data) or >= {needed}")
  return m.collab_size
