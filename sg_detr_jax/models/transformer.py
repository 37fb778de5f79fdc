"""Post-norm transformer encoder layers with torch-style fused in-projection (architecture §3.5).

Used by the detector encoder (3 layers over video) and the training-only sentence / moment encoders.
x = LN1(x + DP(MHA(x + pos, x + pos, x))); x = LN2(x + DP(FFN(x))).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sg_detr_jax.models import layers, matmul


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

  def __call__(self, x, pos, mask, keys):
    d = x.shape[-1]
    w, b = self.in_proj.kernel[...], self.in_proj.bias[...]
    # Queries and keys share their input (x + pos): one matmul for both, then split.
    dt = self.in_proj.dot_general.operand_dtype  # the in-projection's own product (`DenseDot`)
    q, k = jnp.split(matmul.dense(x + pos, w[:, :2 * d], dt) + b[:2 * d], 2, axis=-1)
    v = matmul.dense(x, w[:, 2 * d:], dt) + b[2 * d:]
    a, _ = layers.attention_core(q, k, v, self.heads, key_mask=mask,
                                 dropout_rate=self.dropout_rate, key=keys())
    x = self.norm1(x + layers.drop_path(self.out_proj(a), self.drop_path_rate, keys()))
    return self.norm2(x + layers.drop_path(self.ffn(x, keys()), self.drop_path_rate, keys()))


class Encoder(nnx.Module):
  """A stack of `EncoderLayer`s sharing one positional embedding and key mask (equal at init)."""

  def __init__(self, d, heads, ffn_dim, num_layers, dropout_rate, drop_path_rate, rngs):
    self.layers = layers.clones(
        lambda: EncoderLayer(d, heads, ffn_dim, dropout_rate, drop_path_rate, rngs), num_layers)

  def __call__(self, x, pos, mask, keys):
    for layer in self.layers:
      x = layer(x, pos, mask, keys)
    return x


def saliency_amplify(features: jax.Array, saliency: jax.Array) -> jax.Array:
  """SA(F, S) = F * (1 + sigmoid(S)) (eq. 7 / 9): [B, L, d], [B, L] -> [B, L, d]."""
  return features * (1 + jax.nn.sigmoid(saliency))[..., None].astype(features.dtype)

