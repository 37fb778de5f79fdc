"""ATSS auxiliary head (architecture.md §3.8): separate classification and regression stems of
3 x [Conv1d k=3 (no bias) -> LN -> ReLU], shared across FPN levels, with a per-level learnable
scale on the regression output and the centerness branch on the regression stem."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sg_detr_jax.models import layers


def _conv(d_in, d_out, rngs, bias_init=None, use_bias=True, algorithm="direct"):
  return layers.Conv1D(d_in, d_out, rngs, use_bias=use_bias, kernel_init=layers.normal(0.01),
                       bias_init=bias_init, algorithm=algorithm)


class Stem(nnx.Module):
  """3 x [Conv(k=3, no bias) -> LN -> ReLU]; `conv_algorithm` as `layers.Conv1D`'s `algorithm`."""

  def __init__(self, d, num_convs, rngs, conv_algorithm="direct"):
    self.convs = nnx.List([_conv(d, d, rngs, use_bias=False, algorithm=conv_algorithm)
                           for _ in range(num_convs)])
    self.norms = nnx.List([layers.layer_norm(d, rngs) for _ in range(num_convs)])

  def __call__(self, x):
    for conv, norm in zip(self.convs, self.norms):
      x = jax.nn.relu(norm(conv(x)))
    return x


class ATSSHead(nnx.Module):
  """Per level: class logit [B, n, 1], box deltas [B, n, 2], centerness logit [B, n, 1].

  `conv_algorithm` (`model.conv_algorithm`) computes the stems' convolutions, the head's FLOPs; the
  output convolutions (1-2 channels) stay direct, where F(4, 3)'s transforms would cost more than
  the products they save.
  """

  def __init__(self, d: int, num_convs: int, num_levels: int, prior_prob: float, rngs: nnx.Rngs,
               conv_algorithm: str = "direct"):
    prior_logit = layers.prior_bias(prior_prob)
    self.cls_stem = Stem(d, num_convs, rngs, conv_algorithm)
    self.reg_stem = Stem(d, num_convs, rngs, conv_algorithm)
    self.cls_logits = _conv(d, 1, rngs, jax.nn.initializers.constant(prior_logit))
    self.bbox_reg = _conv(d, 2, rngs, jax.nn.initializers.zeros)
    self.bbox_ctrness = _conv(d, 1, rngs, jax.nn.initializers.zeros)
    self.scales = nnx.List([nnx.Param(jnp.ones((1,), jnp.float32)) for _ in range(num_levels)])

  def __call__(self, levels):
    out = []
    for feat, scale in zip(levels, self.scales):
      c, r = self.cls_stem(feat), self.reg_stem(feat)
      out.append((self.cls_logits(c), self.bbox_reg(r) * scale[...], self.bbox_ctrness(r)))
    return out
