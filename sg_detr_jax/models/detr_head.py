"""The DETR head (official `main_det_head`): the decoder plus its class / span output heads and the
collab-group content mapper (architecture.md §3.10-3.11)."""

from __future__ import annotations

import jax
from flax import nnx

from sg_detr_jax.models import layers
from sg_detr_jax.models.decoder import Decoder


class DETRHead(nnx.Module):
  """Decoder + prediction heads.

  Attributes:
    co_mapper_linear / co_mapper_norm: Linear + LN giving collab queries their content (N(0, .01)
      weights, nn.Linear's default bias).
    decoder: `Decoder`.
    span_embed: MLP3 (zero last layer) predicting span offsets in inverse-sigmoid space.
    class_embed: Linear(d, 1), N(0, .01) weights, bias logit(prior).
    dn_label_enc: [1, d] content of the denoising queries (only with `denoise`).
  """

  def __init__(self, m, rngs: nnx.Rngs):
    d = m.d_model
    if m.collab:
      self.co_mapper_linear = layers.linear(d, d, rngs, layers.normal(0.01),
                                            layers.torch_uniform(d))
      self.co_mapper_norm = layers.layer_norm(d, rngs)
    if m.denoise:
      self.dn_label_enc = nnx.Param(layers.normal(0.01)(rngs.params(), (1, d)))
    self.decoder = Decoder(d, m.num_heads, m.ffn_dim, m.decoder_layers, m.dropout, m.drop_path,
                           m.pe_temperature, m.iou_head, rngs)
    self.span_embed = layers.MLP(d, d, 2, 3, rngs, zero_last=True)
    self.class_embed = layers.linear(d, 1, rngs, layers.normal(0.01), jax.nn.initializers.constant(
        layers.prior_bias(m.prior_prob)))

  def collab_content(self, features: jax.Array) -> jax.Array:
    """[B, K, d] FPN features at the chosen anchors -> collab content queries."""
    return self.co_mapper_norm(self.co_mapper_linear(features))

  def __call__(self, content, reference, memory, memory_pos, memory_mask, group_mask, keys):
    """Decodes all queries.

    Args:
      content: [B, Q, d]; reference: [B, Q, 2] unsigmoided; memory / memory_pos: [B, L, d];
      memory_mask: [B, L] bool; group_mask: [Q, Q] bool (True = blocked) or None.

    Returns:
      logits [layers, B, Q], spans [layers, B, Q, 2] (sigmoid (c, w)), iou [layers, B, Q] or None.
    """
    hs, refs, iou = self.decoder(content, reference, memory, memory_pos, memory_mask, group_mask,
                                 keys)
    layers.probe(self, "decoder_hs", hs)
    layers.probe(self, "decoder_refs", refs)
    logits = self.class_embed(hs)[..., 0]
    spans = jax.nn.sigmoid(self.span_embed(hs) + layers.inverse_sigmoid(refs).astype(hs.dtype))
    return logits, spans, iou
