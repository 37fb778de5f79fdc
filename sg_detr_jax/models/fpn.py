"""1-D feature pyramid over the amplified memory (architecture.md §3.7).

Four levels with strides 1/2, 1, 2, 4 clips, each built from depthwise-separable convs (depthwise k=3
+ pointwise 1x1, no bias), channel LayerNorms and GELU; no residuals, no positional embedding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sg_detr_jax.models import layers

STRIDES = (0.5, 1, 2, 4)


class DWSConv(nnx.Module):
  """Depthwise (k=3, stride s, pad 1, groups=d) then pointwise (1x1) conv, channels-last."""

  def __init__(self, d: int, stride: int, rngs: nnx.Rngs):
    init = layers.normal(0.01)
    self.depthwise = layers.Conv1D(d, d, rngs, stride=stride, depthwise=True, use_bias=False,
                                   kernel_init=init)
    self.pointwise = layers.Conv1D(d, d, rngs, use_bias=False, kernel_init=init, kernel_size=1)

  def __call__(self, x):
    return self.pointwise(self.depthwise(x))


class Branch(nnx.Module):
  """[GELU ->] DWS(s) -> LN -> GELU -> DWS(1) -> LN."""

  def __init__(self, d: int, stride: int, pre_gelu: bool, rngs: nnx.Rngs):
    self.conv1 = DWSConv(d, stride, rngs)
    self.norm1 = layers.layer_norm(d, rngs)
    self.conv2 = DWSConv(d, 1, rngs)
    self.norm2 = layers.layer_norm(d, rngs)
    self.pre_gelu = pre_gelu

  def __call__(self, x):
    if self.pre_gelu:
      x = jax.nn.gelu(x, approximate=False)
    x = jax.nn.gelu(self.norm1(self.conv1(x)), approximate=False)
    return self.norm2(self.conv2(x))


def _pool_mask(mask: jax.Array, window: int) -> jax.Array:
  """Max-pool a [B, L] mask with window = stride (L divisible by `window`)."""
  b, l = mask.shape
  return mask.reshape(b, l // window, window).any(-1)


class FPN(nnx.Module):
  """memory [B, L, d] (L a multiple of 4) -> 4 levels and their masks.

  Returns:
    ([F_u [B, 2L, d], F_0 [B, L, d], F_1 [B, L/2, d], F_2 [B, L/4, d]], [their [B, n_l] masks]).
  """

  def __init__(self, d: int, rngs: nnx.Rngs):
    self.upscale = Branch(d, 1, False, rngs)
    self.level0 = Branch(d, 1, False, rngs)
    self.level1 = Branch(d, 2, False, rngs)
    self.level2 = Branch(d, 2, True, rngs)

  def __call__(self, memory, mask):
    up = self.upscale(jnp.repeat(memory, 2, axis=1))  # nearest-neighbour x2 upsampling
    f0 = self.level0(memory)
    f1 = self.level1(memory)
    f2 = self.level2(f1)
    return [up, f0, f1, f2], self.level_masks(mask)

  @staticmethod
  def level_masks(mask):
    """[B, L] row mask -> the [B, n_l] masks of the four levels."""
    return [jnp.repeat(mask, 2, axis=1), mask, _pool_mask(mask, 2), _pool_mask(mask, 4)]
