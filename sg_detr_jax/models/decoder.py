"""DAB/DINO-style 1-D DETR decoder (architecture.md §3.10).

Per layer: sine embedding of the current reference (center, width) -> self-attention positional
query; conditional spatial query (sine * MLP(content)) modulated by a predicted width ratio;
DAB self-attention with external projections; conditional-DETR cross-attention that concatenates
content and position per head (q/k 64-d per head, v 32-d); post-norm FFN; reference refinement in
inverse-sigmoid space; IoU head on [h ; stopgrad(sine(new reference))].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sg_detr_jax.models import layers


def _proj(d_in, d_out, rngs):
  """A projection of the official decoder layer: its `_init_parameters` re-inits every >1-d
  parameter with xavier(1); the biases keep nn.Linear's default U(+-1 / sqrt(d_in))."""
  return layers.linear(d_in, d_out, rngs, layers.xavier_uniform(1.0), layers.torch_uniform(d_in))


def _concat_heads(a: jax.Array, b: jax.Array, heads: int) -> jax.Array:
  """[B, L, H*da], [B, L, H*db] -> [B, L, H*(da+db)] with each head's parts side by side."""
  bsz, length, _ = a.shape
  return jnp.concatenate([a.reshape(bsz, length, heads, -1), b.reshape(bsz, length, heads, -1)],
                         axis=-1).reshape(bsz, length, -1)


class DecoderSelfAttention(nnx.Module):
  """q = Wqc h + Wqp qpos; k = Wkc h + Wkp (Wqp qpos); v = Wv h; h = LN(h + DP(Wo MHA))."""

  def __init__(self, d, heads, dropout_rate, drop_path_rate, rngs):
    self.query_content_proj = _proj(d, d, rngs)
    self.query_pos_proj = _proj(d, d, rngs)
    self.key_content_proj = _proj(d, d, rngs)
    self.key_pos_proj = _proj(d, d, rngs)
    self.value_proj = _proj(d, d, rngs)
    self.out_proj = _proj(d, d, rngs)
    self.norm1 = layers.layer_norm(d, rngs)
    self.heads, self.dropout_rate, self.drop_path_rate = heads, dropout_rate, drop_path_rate

  def __call__(self, h, query_pos, group_mask, keys):
    qpos = self.query_pos_proj(query_pos)
    # The key position projection takes the *projected* query position (official quirk).
    q = self.query_content_proj(h) + qpos
    k = self.key_content_proj(h) + self.key_pos_proj(qpos)
    a, _ = layers.attention_core(q, k, self.value_proj(h), self.heads, attn_mask=group_mask,
                                 dropout_rate=self.dropout_rate, key=keys())
    return self.norm1(h + layers.drop_path(self.out_proj(a), self.drop_path_rate, keys()))


class DecoderLayer(nnx.Module):
  """Self-attention, content/position-concatenated cross-attention, FFN (all post-norm)."""

  def __init__(self, d, heads, ffn_dim, dropout_rate, drop_path_rate, rngs):
    self.self_attention = DecoderSelfAttention(d, heads, dropout_rate, drop_path_rate, rngs)
    self.ca_qcontent_proj = _proj(d, d, rngs)
    self.ca_qpos_sine_proj = _proj(d, d, rngs)
    self.ca_kcontent_proj = _proj(d, d, rngs)
    self.ca_kpos_proj = _proj(d, d, rngs)
    self.ca_value_proj = _proj(d, d, rngs)
    self.ca_out_proj = _proj(d, d, rngs)
    self.ffn = layers.FFN(d, ffn_dim, dropout_rate, rngs)
    self.norm2 = layers.layer_norm(d, rngs)
    self.norm3 = layers.layer_norm(d, rngs)
    self.heads, self.dropout_rate, self.drop_path_rate = heads, dropout_rate, drop_path_rate

  def __call__(self, h, query_sine, query_pos, memory, memory_pos, memory_mask, group_mask, keys):
    h = self.self_attention(h, query_pos, group_mask, keys)
    q = _concat_heads(self.ca_qcontent_proj(h), self.ca_qpos_sine_proj(query_sine), self.heads)
    k = _concat_heads(self.ca_kcontent_proj(memory), self.ca_kpos_proj(memory_pos), self.heads)
    a, _ = layers.attention_core(q, k, self.ca_value_proj(memory), self.heads,
                                 key_mask=memory_mask, dropout_rate=self.dropout_rate, key=keys())
    h = self.norm2(h + layers.drop_path(self.ca_out_proj(a), self.drop_path_rate, keys()))
    return self.norm3(h + layers.drop_path(self.ffn(h, keys()), self.drop_path_rate, keys()))


class Decoder(nnx.Module):
  """The decoder stack with its shared reference MLPs and IoU head.

  Attributes:
    query_scale: MLP2 content -> per-feature scale of the sine query (conditional spatial query).
    ref_point_head: MLP2 sine(reference) -> self-attention positional query.
    ref_anchor_head: MLP2 content -> width-modulation logit.
    span_embed: MLP3 (zero last layer) reference updater.
    quality_score_embed: MLP3 [h ; sine(new ref)] (512) -> IoU logit.
    norm: LN applied to each layer's output before the prediction heads.
  """

  def __init__(self, d, heads, ffn_dim, num_layers, dropout_rate, drop_path_rate, temperature,
               iou_head: bool, rngs):
    self.layers = layers.clones(
        lambda: DecoderLayer(d, heads, ffn_dim, dropout_rate, drop_path_rate, rngs), num_layers)
    self.query_scale = layers.MLP(d, d, d, 2, rngs)
    if iou_head:
      self.quality_score_embed = layers.MLP(2 * d, d, 1, 3, rngs)
    self.ref_point_head = layers.MLP(d, d, d, 2, rngs)
    self.ref_anchor_head = layers.MLP(d, d, 1, 2, rngs)
    self.span_embed = layers.MLP(d, d, 2, 3, rngs, zero_last=True)
    self.norm = layers.layer_norm(d, rngs)
    self.iou_head, self.temperature, self.d = iou_head, temperature, d

  def __call__(self, content, reference, memory, memory_pos, memory_mask, group_mask, keys):
    """Runs all layers.

    Args:
      content: [B, Q, d] initial content queries.
      reference: [B, Q, 2] unsigmoided initial references (c, w).
      memory: [B, L, d]; memory_pos: [B, L, d]; memory_mask: [B, L] bool (True = valid).
      group_mask: [Q, Q] bool, True = blocked (None: all queries see each other).
      keys: `layers.KeySeq`.

    Returns:
      hs [layers, B, Q, d] normed outputs; refs [layers, B, Q, 2] the reference each layer's span
      head refines (look-forward-twice: layer 0 gets the input reference, layer l > 0 the
      non-detached refinement of layer l - 1); iou [layers, B, Q] logits (None without IoU head).
    """
    ref = jax.nn.sigmoid(reference)
    refs, hs, ious = [ref], [], []
    h = content
    for i, layer in enumerate(self.layers):
      sine = layers.span_sine_embedding(ref, self.d, self.temperature).astype(h.dtype)
      query_pos = self.ref_point_head(sine)
      sine = sine * self.query_scale(h)
      width_ratio = jax.nn.sigmoid(self.ref_anchor_head(h)) / ref[..., 1:2].astype(h.dtype)
      h = layer(h, sine * width_ratio, query_pos, memory, memory_pos, memory_mask, group_mask,
                keys)
      new_ref = jax.nn.sigmoid(self.span_embed(h) + layers.inverse_sigmoid(ref))
      if self.iou_head:
        new_sine = jax.lax.stop_gradient(
            layers.span_sine_embedding(new_ref, self.d, self.temperature)).astype(h.dtype)
        ious.append(self.quality_score_embed(jnp.concatenate([h, new_sine], axis=-1))[..., 0])
      ref = jax.lax.stop_gradient(new_ref)
      if i < len(self.layers) - 1:
        refs.append(new_ref)
      hs.append(self.norm(h))
    return jnp.stack(hs), jnp.stack(refs), (jnp.stack(ious) if self.iou_head else None)
