"""Local saliency head, eq. (1)-(2) (architecture.md §3.2).

F_sent = PoolingEncoder(T0): CaiT-style class-attention pooling with no key/value projections, an
output projection per layer, a pre-norm FFN and one LayerNorm shared between layers (skipped after
the last). S_local[b, i] = exp(theta) * cos(F_sent[b], V0[b, i]) + beta on the projected features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sg_detr_jax.models import layers


class PoolingLayer(nnx.Module):
  """One class-attention layer: q' = q + W_o MHA(q, LN(T), LN(T)); q'' = q' + FFN(LN(q'))."""

  def __init__(self, d: int, heads: int, ffn_dim: int, dropout_rate: float, rngs: nnx.Rngs):
    init = layers.trunc_normal(0.02)  # official `_init_weights` on every Linear (FFN's included)
    self.attn_norm = layers.layer_norm(d, rngs)
    self.out_proj = layers.linear(d, d, rngs, init, jax.nn.initializers.zeros)
    self.ffn_norm = layers.layer_norm(d, rngs)
    self.ffn = layers.FFN(d, ffn_dim, dropout_rate, rngs, init, init)
    self.heads = heads
    self.dropout_rate = dropout_rate

  def __call__(self, q, text, text_mask, keys):
    kv = self.attn_norm(text)
    a, _ = layers.attention_core(q, kv, kv, self.heads, key_mask=text_mask,
                                 dropout_rate=self.dropout_rate, key=keys())
    q = q + self.out_proj(a)
    return q + self.ffn(self.ffn_norm(q), keys())


class LocalSaliencyHead(nnx.Module):
  """Sentence token by attention pooling, then the scaled cosine with every clip.

  Attributes:
    cls_q: [d] learned pooling query.
    temp: theta, the log-scale (init 3.0 -> scale ~20.1).
    a_param: beta, the shift (init 0).
  """

  def __init__(self, d: int, heads: int, ffn_dim: int, num_layers: int, dropout_rate: float,
               logit_scale_init: float, rngs: nnx.Rngs, l2norm_zero_grad: bool = False):
    self.cls_q = nnx.Param(layers.trunc_normal(0.02)(rngs.params(), (d,)))
    self.layers = layers.clones(lambda: PoolingLayer(d, heads, ffn_dim, dropout_rate, rngs),
                                num_layers)
    self.norm = layers.layer_norm(d, rngs)
    self.temp = nnx.Param(jnp.asarray(logit_scale_init, jnp.float32))
    self.a_param = nnx.Param(jnp.asarray(0.0, jnp.float32))
    self.l2norm_zero_grad = l2norm_zero_grad

  def sentence(self, text, text_mask, keys):
    """[B, Lt, d] -> F_sent [B, 1, d]."""
    q = jnp.broadcast_to(self.cls_q[...].astype(text.dtype), (text.shape[0], 1, text.shape[-1]))
    for i, layer in enumerate(self.layers):
      q = layer(q, text, text_mask, keys)
      if i < len(self.layers) - 1:
        q = self.norm(q)
    return q

  def score(self, sentence, video):
    """S_local [B, Lv] from F_sent [B, 1, d] and V0 [B, Lv, d]."""
    normalize = lambda x: layers.l2_normalize(x, zero_grad_at_zero=self.l2norm_zero_grad)
    s, v = normalize(sentence), normalize(video)
    cos = jnp.einsum("bqd,bld->bl", s, v)
    return jnp.exp(self.temp[...]) * cos + self.a_param[...]

  def __call__(self, text, text_mask, video, keys):
    sentence = self.sentence(text, text_mask, keys)
    return self.score(sentence, video), sentence
