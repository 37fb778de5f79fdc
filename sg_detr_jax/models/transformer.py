"""Post-norm transformer encoder layers with torch-style fused in-projection (architecture §3.5).

Used by the detector encoder (3 layers over video) and the training-only sentence / moment encoders.
x = LN1(x + DP(MHA(x + pos, x + pos, x))); x = LN2(x + DP(FFN(x))).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sg_detr_jax.models import layers, matmul


class Rows(NamedTuple):
  """The output rows a caller reads from an encoder's last layer, which then computes only them.

  A layer's output row r depends on the whole sequence through its keys and values, but on row r
  alone through its query, residual and FFN: the training-only alignment branches read one row
  (the sentence token) or one pass's rows of two passes (the moment / non-moment tokens), and the
  rest of that layer's queries, out-projections and FFNs were computed to be thrown away.

  index: static ints [R], the sequence position each output row is computed for (may repeat).
  key_mask: [B, R, Lk] bool, True = the key is visible to that row; None = the encoder's mask.
  second_pass: [B, R] bool, the rows of a second pass over the same input merged into these (its
    own DropPath draw per sample, as a separate pass would have); None = one pass.
  """
  index: np.ndarray
  key_mask: jax.Array | None = None
  second_pass: jax.Array | None = None


class EncoderLayer(nnx.Module):
  """One post-norm layer; `in_proj` is the fused [d, 3d] q/k/v projection (torch in_proj_weight^T).

  Init as the official layer: nn.MultiheadAttention's (xavier in-projection, zero biases), then the
  layer's xavier(1) over the attention's >1-d parameters (the out-projection weight); the FFN, built
  after that, keeps its own init.
  """

  def __init__(self, d, heads, ffn_dim, dropout_rate, drop_path_rate, rngs):
    self.in_proj = layers.linear(d, 3 * d, rngs, layers.xavier_uniform(1.0),
                                 jax.nn.initializers.zeros)
    self.out_proj = layers.linear(d, d, rngs, layers.xavier_uniform(1.0), jax.nn.initializers.zeros)
    self.ffn = layers.FFN(d, ffn_dim, dropout_rate, rngs)
    self.norm1 = layers.layer_norm(d, rngs)
    self.norm2 = layers.layer_norm(d, rngs)
    self.heads, self.dropout_rate, self.drop_path_rate = heads, dropout_rate, drop_path_rate

  def __call__(self, x, pos, mask, keys, rows: Rows | None = None):
    """x, pos [B, L, d], mask [B, L] (True = valid key) -> [B, L, d]; with `rows`, [B, R, d]."""
    d = x.shape[-1]
    w, b = self.in_proj.kernel[...], self.in_proj.bias[...]
    dt = self.in_proj.dot_general.operand_dtype  # the in-projection's own product (`DenseDot`)
    v = matmul.dense(x, w[:, 2 * d:], dt) + b[2 * d:]
    attn_mask, second = None, None
    if rows is None:
      # Queries and keys share their input (x + pos): one matmul for both, then split.
      q, k = jnp.split(matmul.dense(x + pos, w[:, :2 * d], dt) + b[:2 * d], 2, axis=-1)
    else:
      k = matmul.dense(x + pos, w[:, d:2 * d], dt) + b[d:2 * d]
      x = x[:, rows.index]  # the residual stream of the rows computed
      q = matmul.dense(x + pos[:, rows.index], w[:, :d], dt) + b[:d]
      if rows.key_mask is not None:
        mask, attn_mask = None, ~rows.key_mask
      second = rows.second_pass
    a, _ = layers.attention_core(q, k, v, self.heads, key_mask=mask, attn_mask=attn_mask,
                                 dropout_rate=self.dropout_rate, key=keys())
    x = self.norm1(x + layers.drop_path(self.out_proj(a), self.drop_path_rate, keys(), second))
    return self.norm2(x + layers.drop_path(self.ffn(x, keys()), self.drop_path_rate, keys(),
                                           second))


class Encoder(nnx.Module):
  """A stack of `EncoderLayer`s sharing one positional embedding and key mask (equal at init)."""

  def __init__(self, d, heads, ffn_dim, num_layers, dropout_rate, drop_path_rate, rngs):
    self.layers = layers.clones(
        lambda: EncoderLayer(d, heads, ffn_dim, dropout_rate, drop_path_rate, rngs), num_layers)

  def __call__(self, x, pos, mask, keys, rows: Rows | None = None):
    """x, pos [B, L, d], mask [B, L] -> [B, L, d]; the last layer computes `rows` only ([B, R, d])."""
    for i, layer in enumerate(self.layers):
      x = layer(x, pos, mask, keys, rows if i == len(self.layers) - 1 else None)
    return x


def saliency_amplify(features: jax.Array, saliency: jax.Array) -> jax.Array:
  """SA(F, S) = F * (1 + sigmoid(S)) (eq. 7 / 9): [B, L, d], [B, L] -> [B, L, d]."""
  return features * (1 + jax.nn.sigmoid(saliency))[..., None].astype(features.dtype)

