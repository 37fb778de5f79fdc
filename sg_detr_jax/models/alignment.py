"""Training-only CG-DETR alignment branches (architecture.md §3.12): a sentence token and a moment
token, each produced by one post-norm encoder layer; they only feed the alignment losses.

Their encoders' last layers compute only the rows read (`transformer.Rows`): the sentence token,
and for the moment encoder's two passes (one layer, the official size) one merged set of rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sg_detr_jax.models.transformer import Encoder, Rows


def _prepend(token: jax.Array, x: jax.Array) -> jax.Array:
  """[1, d] token before every sequence of [B, L, d] -> [B, 1 + L, d]."""
  return jnp.concatenate([jnp.broadcast_to(token.astype(x.dtype), (x.shape[0], 1, x.shape[-1])), x],
                         axis=1)


def _with_token_mask(mask: jax.Array) -> jax.Array:
  return jnp.concatenate([jnp.ones((mask.shape[0], 1), bool), mask], axis=1)


class SentenceEncoder(nnx.Module):
  """s_out = Enc([s ; T1], pos [s_pos ; 0])[0] -> [B, d]."""

  def __init__(self, d, heads, ffn_dim, num_layers, dropout_rate, drop_path_rate, rngs):
    self.sent_rep_token = nnx.Param(jax.random.normal(rngs.params(), (1, d)))
    self.sent_rep_pos = nnx.Param(jax.random.normal(rngs.params(), (1, d)))
    self.encoder = Encoder(d, heads, ffn_dim, num_layers, dropout_rate, drop_path_rate, rngs)

  def __call__(self, text, text_mask, keys):
    x = _prepend(self.sent_rep_token[...], text)
    pos = _prepend(self.sent_rep_pos[...], jnp.zeros_like(text))
    return self.encoder(x, pos, _with_token_mask(text_mask), keys, Rows(np.zeros(1, int)))[:, 0]


class MomentEncoder(nnx.Module):
  """Moment token over the relevant clips and over the others (same weights, two passes).

  Returns m_plus [B, d], m_minus [B, d] and the per-clip memory z [B, L, d] (relevant clips from
  the moment pass, the others from the non-moment pass).
  """

  def __init__(self, d, heads, ffn_dim, num_layers, dropout_rate, drop_path_rate, rngs):
    self.moment_rep_token = nnx.Param(jax.random.normal(rngs.params(), (1, d)))
    self.moment_rep_pos = nnx.Param(jax.random.normal(rngs.params(), (1, d)))
    self.encoder = Encoder(d, heads, ffn_dim, num_layers, dropout_rate, drop_path_rate, rngs)

  def __call__(self, video, video_pos, video_mask, relevant, keys):
    x = _prepend(self.moment_rep_token[...], video)
    pos = _prepend(self.moment_rep_pos[...], video_pos)
    plus_keys = _with_token_mask(video_mask & relevant)
    minus_keys = _with_token_mask(video_mask & ~relevant)
    if len(self.encoder.layers) > 1:
      plus = self.encoder(x, pos, plus_keys, keys)
      minus = self.encoder(x, pos, minus_keys, keys)
      z = jnp.where(relevant[..., None], plus[:, 1:], minus[:, 1:])
      return plus[:, 0], minus[:, 0], z
    # One layer: both passes share their input, so one layer computes the rows read of each: the
    # token with the moment keys, the token with the others, and each clip with the keys of its
    # own pass (the moment pass for relevant clips). Keys, values and queries are computed once.
    length = video.shape[1]
    index = np.concatenate([[0, 0], np.arange(1, length + 1)])
    clip_keys = jnp.where(relevant[..., None], plus_keys[:, None], minus_keys[:, None])
    key_mask = jnp.concatenate([plus_keys[:, None], minus_keys[:, None], clip_keys], axis=1)
    second = jnp.concatenate([jnp.zeros_like(relevant[:, :1]), jnp.ones_like(relevant[:, :1]),
                              ~relevant], axis=1)
    out = self.encoder(x, pos, None, keys, Rows(index, key_mask, second))
    return out[:, 0], out[:, 1], out[:, 2:]
