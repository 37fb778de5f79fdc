"""Training-only CG-DETR alignment branches (architecture.md §3.12): a sentence token and a moment
token, each produced by one post-norm encoder layer; they only feed the alignment losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sg_detr_jax.models.transformer import Encoder


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
    return self.encoder(x, pos, _with_token_mask(text_mask), keys)[:, 0]


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
    plus = self.encoder(x, pos, _with_token_mask(video_mask & relevant), keys)
    minus = self.encoder(x, pos, _with_token_mask(video_mask & ~relevant), keys)
    z = jnp.where(relevant[..., None], plus[:, 1:], minus[:, 1:])
    return plus[:, 0], minus[:, 0], z
