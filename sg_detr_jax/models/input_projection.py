"""Input projections (architecture.md §3.1): LN -> Dropout 0.5 -> Linear -> ReLU -> LN -> Dropout 0.5
-> Linear, mapping raw video (514) / text (512) features to the model width."""

from __future__ import annotations

import jax
from flax import nnx

from sg_detr_jax.models import layers


class InputProjection(nnx.Module):
  """[B, L, d_in] -> [B, L, d_model]; the first Linear is xavier(ReLU gain), the second xavier(1)."""

  def __init__(self, d_in: int, d_model: int, dropout_rate: float, rngs: nnx.Rngs):
    self.norm1 = layers.layer_norm(d_in, rngs)
    self.linear1 = layers.linear(d_in, d_model, rngs, layers.xavier_uniform(2 ** 0.5),
                                 jax.nn.initializers.zeros)
    self.norm2 = layers.layer_norm(d_model, rngs)
    self.linear2 = layers.linear(d_model, d_model, rngs, layers.xavier_uniform(1.0),
                                 jax.nn.initializers.zeros)
    self.dropout_rate = dropout_rate

  def __call__(self, x, keys: layers.KeySeq):
    h = jax.nn.relu(self.linear1(layers.dropout(self.norm1(x), self.dropout_rate, keys())))
    return self.linear2(layers.dropout(self.norm2(h), self.dropout_rate, keys()))
