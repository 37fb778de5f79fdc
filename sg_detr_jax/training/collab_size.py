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
import ml_collections
import numpy as np

from sg_detr_jax.data.pipeline import ExampleProcessor
from sg_detr_jax.data.tfds_source import open_split
from sg_detr_jax.models import atss

_CHUNK = 256  # examples per jitted assignment call


def batch_positives(config, batch: dict) -> int:
  """max_b |P_b| of one batch (numpy arrays in the pipeline's layout): the official collab group
  size for it. Each example is assigned twice with the training step's own assignment
  (`atss.training_targets`), over its own valid rows and over the whole static grid: the official
  candidates come from the batch's padded grid, which lies between the two."""
  own_rows = ml_collections.FrozenConfigDict(dict(config.model.to_dict(),
                                                  atss_anchor_grid="sample"))
  return int(_count(own_rows, {k: jnp.asarray(batch[k]) for k in _KEYS}))


_KEYS = ("spans", "span_mask", "span_seconds", "clip_len", "video_mask")


@functools.partial(jax.jit, static_argnums=0)
def _count(model_config, batch):
  def positives(video_mask):
    targets = atss.training_targets(dict(batch, video_mask=video_mask), model_config)
    return targets.labels.sum(axis=1)
  mask = batch["video_mask"].astype(bool)
  return jnp.maximum(positives(mask), positives(jnp.ones_like(mask))).max()


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
