"""Extra training query groups for the decoder and the mask that isolates them (architecture §3.11).

Order of the decoder's queries: [DN groups | collab group | regular]. Static shapes (A16): the
collab group has a fixed capacity with slot validity `slot < max_b |P_b|` (the official dynamic
padding size), the DN groups have `max_windows` slots per half with validity `slot < max_b n_gt`.
Invalid slots are hidden from every other query, so the valid ones compute exactly what the
official dynamically-sized groups compute.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sg_detr_jax import spans as span_ops
from sg_detr_jax.models import layers


def collab_selection(labels, matched_gt, anchors, anchor_mask, num_clips, cap, key):
  """Chooses the collab (Co-DETR) queries of each sample: its ATSS positives, then random negatives.

  Args:
    labels: [B, A] bool ATSS positives.
    matched_gt: [B, A, 2] (start, end) of each anchor's matched GT, clip units.
    anchors: [A, 2] (x1, x2) clip units.
    anchor_mask: [B, A] bool, anchor inside the sample's valid length.
    num_clips: [B] valid clips per sample (the span normaliser).
    cap: static group size.
    key: PRNG key for the negative padding.

  Returns:
    dict with index [B, cap] anchor ids, reference [B, cap, 2] unsigmoided normalised (c, w),
    label [B, cap] bool, target [B, cap, 2] normalised (c, w) of the matched GT, valid [cap] bool.
  """
  bsz, num = labels.shape
  order = (num - jnp.arange(num, dtype=jnp.float32)) / num  # positives in anchor order
  noise = jax.random.uniform(key, (bsz, num))
  priority = jnp.where(labels, 2.0 + order[None], jnp.where(anchor_mask, noise, -1.0))
  _, index = jax.lax.top_k(priority, cap)
  num_pos = labels.sum(axis=1)
  slots = jnp.arange(cap)
  valid = slots < jnp.minimum(num_pos.max(), cap)
  label = (slots[None] < num_pos[:, None]) & valid[None]
  norm = num_clips.astype(jnp.float32)[:, None, None]
  # (x1, x2) -> (center, width) with the width without "+1" (official span_xx_to_cxw).
  anchor_cw = span_ops.xx_to_cxw(anchors[index]) / norm
  target = span_ops.xx_to_cxw(jnp.take_along_axis(matched_gt, index[..., None], axis=1)) / norm
  return {"index": index, "reference": layers.inverse_sigmoid(anchor_cw), "label": label,
          "target": target, "valid": valid}


def num_dn_groups(budget: int, max_windows: int) -> int:
  """Static number of DN groups: max(1, budget // (2 * max GT per sample))."""
  return max(1, budget // (2 * max_windows))


def denoise_queries(spans, span_mask, groups, noise, negative_offset, key):
  """Contrastive denoising references (DINO CDN in 1-D, noise in (start, end) space).

  Args:
    spans: [B, W, 2] normalised (c, w) GT; span_mask: [B, W] bool.
    groups: static number of groups; noise: lambda; negative_offset: added to |u| for negatives.
    key: PRNG key.

  Returns:
    reference [B, G*2W, 2] unsigmoided (0 for padding slots), present [B, G*2W] (a real GT behind
    the slot), label [B, G*2W] bool (positive half), target [B, G*2W, 2], valid [G*2W] slot
    validity (slot < max_b n_gt in its half).
  """
  bsz, w, _ = spans.shape
  x = span_ops.cxw_to_xx(spans)
  k_sign, k_mag = jax.random.split(key)
  shape = (bsz, groups, 2, w, 2)
  sign = jax.random.bernoulli(k_sign, 0.5, shape).astype(jnp.float32) * 2 - 1
  mag = jax.random.uniform(k_mag, shape) + jnp.array([0.0, negative_offset])[None, None, :, None,
                                                                              None]
  half_width = spans[:, None, None, :, 1:2] / 2
  noisy = jnp.clip(x[:, None, None] + sign * mag * half_width * noise, 0.0, 1.0)
  noisy = span_ops.xx_to_cxw(noisy)
  present = jnp.broadcast_to(span_mask[:, None, None, :], shape[:-1])
  reference = jnp.where(present[..., None], layers.inverse_sigmoid(noisy), 0.0)
  label = present & (jnp.arange(2) == 0)[None, None, :, None]
  target = jnp.broadcast_to(spans[:, None, None], shape)
  valid = jnp.broadcast_to(jnp.arange(w) < span_mask.sum(axis=1).max(), (groups, 2, w))
  return {"reference": reference.reshape(bsz, -1, 2), "present": present.reshape(bsz, -1),
          "label": label.reshape(bsz, -1), "target": target.reshape(bsz, -1, 2),
          "valid": valid.reshape(-1)}


def group_mask(num_dn: int, dn_groups: int, dn_valid, num_co: int, co_valid, num_regular: int):
  """[T, T] self-attention mask (True = blocked), T = num_dn + num_co + num_regular.

  The three sets are mutually invisible; each DN group sees only itself; invalid (padding) slots
  are hidden from every other query (they still see themselves so no softmax row is empty).
  """
  total = num_dn + num_co + num_regular
  group = jnp.concatenate([
      jnp.repeat(jnp.arange(dn_groups), num_dn // max(dn_groups, 1)) if num_dn else
      jnp.zeros((0,), jnp.int32),
      jnp.full((num_co,), dn_groups), jnp.full((num_regular,), dn_groups + 1)]).astype(jnp.int32)
  valid = jnp.concatenate([
      dn_valid if num_dn else jnp.zeros((0,), bool),
      co_valid if num_co else jnp.zeros((0,), bool), jnp.ones((num_regular,), bool)])
  blocked = group[:, None] != group[None, :]
  blocked = blocked | ~valid[None, :]
  return blocked & ~jnp.eye(total, dtype=bool)
