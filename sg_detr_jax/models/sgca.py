"""Saliency-guided cross-attention encoder, eq. (3)-(5) (architecture.md §3.4).

Video clips query the text with no per-layer Q/K/V projections; the post-softmax weights of clip i
are multiplied by sigma(S_local[i]) before attention dropout and the output projection. Only the
clips are updated; the LayerNorm shared by all layers normalises the whole [video; text] sequence
after every layer and once more at the end (the official layer-norm placement, kept for parity).
"""

from __future__ import annotations

import jax
from flax import nnx

from sg_detr_jax.models import layers


class SGCALayer(nnx.Module):
  """V' = V + DP(W_o gated-attn); V'' = V' + DP(LN1(FFN(V'))); out = LN2(V'')."""

  def __init__(self, d, heads, ffn_dim, dropout_rate, drop_path_rate, rngs, gated: bool = True,
               qkv_proj: bool = False):
    if qkv_proj:  # ablation: the paper's learned per-layer W_q, W_k, W_v (A3)
      self.q_proj, self.k_proj, self.v_proj = (
          layers.linear(d, d, rngs, layers.xavier_uniform(1.0), jax.nn.initializers.zeros)
          for _ in range(3))
    self.qkv_proj = qkv_proj
    # Official init: the layer's xavier(1) over the attention's >1-d parameters; the out-projection
    # bias keeps nn.Linear's default. The FFN, built after that, keeps its own init.
    self.out_proj = layers.linear(d, d, rngs, layers.xavier_uniform(1.0), layers.torch_uniform(d))
    self.ffn = layers.FFN(d, ffn_dim, dropout_rate, rngs)
    self.norm1 = layers.layer_norm(d, rngs)
    self.norm2 = layers.layer_norm(d, rngs)
    self.heads, self.dropout_rate, self.drop_path_rate = heads, dropout_rate, drop_path_rate
    self.gated = gated

  def __call__(self, video, video_pos, text, text_mask, saliency, keys):
    gate = jax.nn.sigmoid(saliency) if self.gated else None
    q, k, v = video + video_pos, text, text
    if self.qkv_proj:
      q, k, v = self.q_proj(q), self.k_proj(k), self.v_proj(v)
    a, weights = layers.attention_core(q, k, v, self.heads,
                                       key_mask=text_mask, gate=gate,
                                       dropout_rate=self.dropout_rate, key=keys())
    v = video + layers.drop_path(self.out_proj(a), self.drop_path_rate, keys())
    v = v + layers.drop_path(self.norm1(self.ffn(v, keys())), self.drop_path_rate, keys())
    return self.norm2(v), weights


class SGCAEncoder(nnx.Module):
  """Stack of SGCA layers with the shared LayerNorm. Returns Vx [B, Lv, d]."""

  def __init__(self, d, heads, ffn_dim, num_layers, dropout_rate, drop_path_rate, rngs,
               gated: bool = True, qkv_proj: bool = False):
    self.layers = layers.clones(
        lambda: SGCALayer(d, heads, ffn_dim, dropout_rate, drop_path_rate, rngs, gated, qkv_proj),
        num_layers)
    self.norm = layers.layer_norm(d, rngs)

  def __call__(self, video, video_pos, text, text_mask, saliency, keys):
    for layer in self.layers:
      video, _ = layer(video, video_pos, text, text_mask, saliency, keys)
      # The shared LN runs over [video; text]: it is per-token, so apply it to each part.
      video, text = self.norm(video), self.norm(text)
    layers.probe(self, "text_out", self.norm(text))
    return self.norm(video)
