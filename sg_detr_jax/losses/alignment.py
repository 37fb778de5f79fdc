"""CG-DETR alignment losses, eq. (14) (architecture.md §6.4)."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from sg_detr_jax.losses.detection import sigmoid_focal
from sg_detr_jax.models.layers import l2_normalize



def moment_sentence_alignment(moment, sentence, alpha, gamma):
  """sum over columns j of mean over rows i of focal(cos(m+_i, s_j), 1[i = j]); raw cosines as logits.

  moment, sentence: [B, d].
  """
  logits = l2_normalize(moment) @ l2_normalize(sentence).T
  target = jnp.eye(logits.shape[0], dtype=logits.dtype)
  return sigmoid_focal(logits, target, alpha, gamma).mean(axis=0).sum()


def moment_clip_classification(moment, memory, relevant, mask):
  """mean over B x L of mask * BCE(<m+, z_t> / sqrt(d), 1[y_t > 0]); memory [B, L, d]."""
  logits = jnp.einsum("bd,bld->bl", moment, memory) / jnp.sqrt(moment.shape[-1])
  return (optax.sigmoid_binary_cross_entropy(logits, relevant.astype(logits.dtype)) * mask).mean()
