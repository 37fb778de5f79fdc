"""Two-stage query selection over the FPN tokens (architecture.md §3.9).

Every FPN token proposes a span (center of its cell, the level's default width); a Linear + LN
maps the tokens, class and IoU heads score them, and the top-Q tokens by sqrt(p_cls * p_iou) become
the decoder's queries: content = the detached mapped feature (pure two-stage selection, A9),
reference = the detached proposal refined by a zero-initialised span MLP (inverse-sigmoid space).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sg_detr_jax.models import layers

# Unsigmoided reference of an invalid proposal: sigmoid() of it is 1.0 in f32 and bf16 (the
# official code uses +inf; a finite value keeps gradients of unselected rows finite).
INVALID_PROPOSAL = 30.0


def proposals(level_masks, widths, valid_range):
  """Per-token (center, width) proposals in inverse-sigmoid space and their validity.

  Args:
    level_masks: list of [B, n_l] bool level masks.
    widths: default width per level.
    valid_range: (lo, hi); a proposal is valid iff lo < c, w < hi and its token is valid.

  Returns:
    unsigmoided proposals [B, N, 2] (INVALID_PROPOSAL where invalid), valid [B, N] bool.
  """
  lo, hi = valid_range
  out, valid = [], []
  for mask, width in zip(level_masks, widths):
    n_valid = mask.sum(axis=1, keepdims=True).astype(jnp.float32)  # [B, 1]
    k = jnp.arange(mask.shape[1], dtype=jnp.float32)[None]
    c = (k + 0.5) / jnp.maximum(n_valid, 1.0)
    w = jnp.full_like(c, width)
    p = jnp.stack([c, w], axis=-1)
    ok = mask & jnp.all((p > lo) & (p < hi), axis=-1)
    out.append(jnp.where(ok[..., None], layers.inverse_sigmoid(p), INVALID_PROPOSAL))
    valid.append(ok)
  return jnp.concatenate(out, axis=1), jnp.concatenate(valid, axis=1)


class QuerySelector(nnx.Module):
  """FPN tokens -> top-Q content queries, references and the encoder-proposal predictions."""

  def __init__(self, d: int, num_queries: int, prior_prob: float, widths, valid_range,
               rngs: nnx.Rngs):
    self.enc_output = layers.linear(d, d, rngs, layers.xavier_uniform(1.0),
                                    jax.nn.initializers.zeros)
    self.enc_output_norm = layers.layer_norm(d, rngs)
    self.span_embed = layers.MLP(d, d, 2, 3, rngs, zero_last=True)
    bias = layers.prior_bias(prior_prob)
    self.class_embed = layers.linear(d, 1, rngs, layers.normal(0.01),
                                     jax.nn.initializers.constant(bias))
    self.iou_embed = layers.linear(d, 1, rngs, layers.normal(0.01),
                                   jax.nn.initializers.constant(2 * bias))
    self.num_queries = num_queries
    self.widths, self.valid_range = tuple(widths), tuple(valid_range)

  def __call__(self, tokens: jax.Array, level_masks) -> dict[str, jax.Array]:
    """Selects the queries.

    Args:
      tokens: [B, N, d] concatenated FPN levels (N = sum of level lengths).
      level_masks: list of [B, n_l] bool.

    Returns:
      content [B, Q, d] (detached), reference [B, Q, 2] unsigmoided (detached),
      enc_logits [B, Q], enc_iou [B, Q], enc_spans [B, Q, 2] (sigmoid, with gradient),
      index [B, Q] selected token ids.
    """
    prop, valid = proposals(level_masks, self.widths, self.valid_range)
    z = jnp.where(valid[..., None], tokens, 0.0)
    z = self.enc_output_norm(self.enc_output(z))
    cls = self.class_embed(z)[..., 0]
    iou = self.iou_embed(z)[..., 0]
    score = jnp.sqrt(jax.nn.sigmoid(cls) * jax.nn.sigmoid(iou))
    score = jnp.where(valid, score, layers.MASK_VALUE)
    _, index = jax.lax.top_k(jax.lax.stop_gradient(score.astype(jnp.float32)), self.num_queries)
    take = lambda x: jnp.take_along_axis(x, index[..., None] if x.ndim == 3 else index, axis=1)
    ref = take(prop) + self.span_embed(take(z))
    return {
        "content": jax.lax.stop_gradient(take(z)),
        "reference": jax.lax.stop_gradient(ref),
        "enc_logits": take(cls),
        "enc_iou": take(iou),
        "enc_spans": jax.nn.sigmoid(ref),
        "index": index,
    }
