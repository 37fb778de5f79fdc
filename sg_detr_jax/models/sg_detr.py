"""SG-DETR, the whole model (architecture.md §1, §3): one `nnx.Module`, batch-first, static shapes.

Forward (inference): input projections -> local saliency (eq. 1-2) -> modality embeddings ->
SGCA (eq. 3-5) -> detector encoder (eq. 6) -> saliency amplifier / global saliency (eq. 7-9) ->
FPN -> ATSS head + query selector -> DETR decoder. Training adds the ATSS assignment, the collab
(and optional DN) query groups, the negative-text pass and the CG-DETR alignment branches.

Outputs are a plain dict of arrays (B batch, L clips, Q = 25 queries, A anchors, N layers):
  saliency_local / saliency_global [B, L]      local and global saliency logits (HD output)
  pred_logits [N, B, Q], pred_spans [N, B, Q, 2] (c, w) in [0, 1], pred_iou [N, B, Q] (IoU head)
  enc_logits [B, Q], enc_iou [B, Q], enc_spans [B, Q, 2]         query-selector proposals
  atss_logits [B, A], atss_deltas [B, A, 2], atss_ctr [B, A]      (with `model.atss`)
  anchors [A, 2] (clip units), anchor_mask [B, A] the ATSS candidates (`model.atss_anchor_grid`:
    the batch's padded grid, official, or the sample's valid rows)  (with `model.atss` or `collab`)
training only:
  saliency_local_neg / saliency_global_neg [B, L]  negative-text pass (the loss keeps the rows
    whose rolled partner is a real negative, `losses.saliency.real_negatives`)
  atss_labels [B, A] bool, atss_gt [B, A, 2] matched GT (start, end) in clip units
  co_logits [N, B, K], co_spans [N, B, K, 2], co_label [B, K], co_target [B, K, 2], co_valid [K],
    co_positives [] = max_b |P_b| (K = `model.collab_size`)
Under `nnx.capture(model, nnx.Intermediate)` the stages also sow their outputs (`layers.probe`).
  dn_logits / dn_spans / dn_label / dn_present / dn_target / dn_valid  (with `model.denoise`)
  sentence [B, d], moment [B, d], moment_memory [B, L, d]        alignment branches
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sg_detr_jax.models import atss, layers, query_groups
from sg_detr_jax.models.alignment import MomentEncoder, SentenceEncoder
from sg_detr_jax.models.atss_head import ATSSHead
from sg_detr_jax.models.detr_head import DETRHead
from sg_detr_jax.models.fpn import FPN, STRIDES
from sg_detr_jax.models.input_projection import InputProjection
from sg_detr_jax.models.local_saliency import LocalSaliencyHead
from sg_detr_jax.models.query_selector import QuerySelector
from sg_detr_jax.models.sgca import SGCAEncoder
from sg_detr_jax.models.transformer import Encoder, saliency_amplify

class UnusedTextPositionEmbedding(nnx.Module):
  """The official model instantiates a learned text PE (100 x d + LN) and never uses it
  (`use_txt_pos=False`); kept so parameter counts and checkpoints map one to one."""

  def __init__(self, d, max_len, rngs):
    self.position_embeddings = nnx.Param(layers.normal(1.0)(rngs.params(), (max_len, d)))
    self.norm = layers.layer_norm(d, rngs)


class SGDETR(nnx.Module):
  """The full model; `config.model` (see configs/base.py) sets every size and switch."""

  def __init__(self, m, video_dim: int, text_dim: int, max_windows: int, rngs: nnx.Rngs):
    if tuple(m.fpn_strides) != STRIDES:
      raise ValueError(f"model.fpn_strides must be {STRIDES} (the FPN's fixed levels)")
    d = m.d_model
    self.cfg = m
    self.max_windows = max_windows
    self.input_vid_proj = InputProjection(video_dim, d, m.input_dropout, rngs)
    self.input_txt_proj = InputProjection(text_dim, d, m.input_dropout, rngs)
    self.modality_embeddings = nnx.Param(layers.normal(0.02)(rngs.params(), (2, d)))
    self.txt_position_embed = UnusedTextPositionEmbedding(d, m.text_pe_len, rngs)
    self.local_saliency_head = LocalSaliencyHead(d, m.num_heads, m.ffn_dim, m.pooling_layers,
                                                 m.dropout, m.logit_scale_init, rngs,
                                                 m.l2norm_zero_grad)
    self.txt2vis_sal_encoder = SGCAEncoder(d, m.num_heads, m.ffn_dim, m.sgca_layers, m.dropout,
                                           m.drop_path, rngs, m.sgca_gated, m.sgca_qkv_proj)
    self.det_encoder = Encoder(d, m.num_heads, m.ffn_dim, m.encoder_layers, m.dropout,
                               m.drop_path, rngs)
    if m.global_saliency:
      self.global_saliency_head = layers.linear(d, 1, rngs, jax.nn.initializers.zeros,
                                                jax.nn.initializers.zeros)
    self.fpn = FPN(d, rngs)
    self.query_selector = QuerySelector(d, m.num_queries, m.prior_prob, m.proposal_widths,
                                        m.proposal_range, rngs)
    self.main_det_head = DETRHead(m, rngs)
    if self.uses_atss:
      self.aux_det_head = ATSSHead(d, m.atss_convs, len(STRIDES), m.prior_prob, rngs)
    self.sent_encoder = SentenceEncoder(d, m.num_heads, m.ffn_dim, m.sentence_layers, m.dropout,
                                        m.drop_path, rngs)
    self.moment_encoder = MomentEncoder(d, m.num_heads, m.ffn_dim, m.moment_layers, m.dropout,
                                        m.drop_path, rngs)

  def params_without_gradient(self) -> tuple[str, ...]:
    """Dotted prefixes of the parameters that the training loss never reaches.

    The official optimizer leaves them untouched, weight decay included: the unused text PE. (The
    collab mapper has no gradient in an eval-mode loss only, which training never computes.)
    """
    return ("txt_position_embed",)

  @property
  def uses_atss(self) -> bool:
    return bool(self.cfg.atss or self.cfg.collab)

  def _anchor_rows(self, video_mask):
    """[B, L] rows whose anchors are ATSS candidates (assignment, loss, post-processing).

    "batch" (official): the batch's padded grid, i.e. every row up to the longest valid length of
    the batch, including rows past a sample's own length. "sample": the sample's valid rows.
    """
    if self.cfg.atss_anchor_grid == "sample":
      return video_mask
    if self.cfg.atss_anchor_grid != "batch":
      raise ValueError(f"model.atss_anchor_grid must be 'batch' or 'sample', got "
                       f"{self.cfg.atss_anchor_grid!r}")
    rows = jnp.arange(video_mask.shape[1]) < video_mask.sum(axis=1).max()
    return jnp.broadcast_to(rows, video_mask.shape)

  # -- stages ------------------------------------------------------------------------------------
  def _encode(self, v1, video_pos, video_mask, t1, text_mask, s_local, keys):
    """SGCA -> detector encoder -> saliency amplifier: (S_global [B, L], memory M2 [B, L, d])."""
    m = self.cfg
    vx = self.txt2vis_sal_encoder(v1, video_pos, t1, text_mask, s_local, keys)
    mem = self.det_encoder(vx, video_pos, video_mask, keys)
    layers.probe(self, "sgca_video", vx)
    layers.probe(self, "det_memory", mem)
    m1 = saliency_amplify(mem, s_local) if m.saliency_amplifier else mem
    s_global = s_local
    if m.global_saliency:
      s_global = s_local + self.global_saliency_head(m1)[..., 0].astype(s_local.dtype)
    if not m.saliency_amplifier:
      return s_global, mem
    # SA #2 takes the raw encoder output again, not M1 (A6).
    return s_global, (saliency_amplify(mem, s_global) if m.global_saliency else m1)

  # -- forward -----------------------------------------------------------------------------------
  def __call__(self, batch: dict, key: jax.Array | None = None, train: bool = False) -> dict:
    """Runs the model.

    Args:
      batch: video [B, L, Dv], video_mask [B, L], text [B, Lt, Dt], text_mask [B, Lt]; in training
        also spans [B, W, 2], span_mask [B, W], saliency [B, L], span_seconds [B], clip_len [B].
      key: PRNG key for dropout / DropPath / collab negatives / DN noise (training).
      train: training mode (stochastic layers, query groups, negative pass, alignment branches).

    Returns:
      the outputs dict described in the module docstring.
    """
    m = self.cfg
    if train and key is None:
      raise ValueError("training mode needs a PRNG key")
    keys = layers.KeySeq(key if train else None)
    video_mask, text_mask = batch["video_mask"].astype(bool), batch["text_mask"].astype(bool)
    dtype = batch["video"].dtype
    v0 = self.input_vid_proj(batch["video"], keys)
    t0 = self.input_txt_proj(batch["text"], keys)
    s_local, f_sent = self.local_saliency_head(t0, text_mask, v0, keys)
    layers.probe(self, "vid_proj", v0)
    layers.probe(self, "txt_proj", t0)
    layers.probe(self, "sent_token", f_sent)
    emb = self.modality_embeddings[...].astype(dtype)
    v1, t1 = v0 + emb[1], t0 + emb[0]
    video_pos = layers.sine_position_embedding(video_mask, m.d_model, m.pe_temperature).astype(dtype)
    s_global, memory = self._encode(v1, video_pos, video_mask, t1, text_mask, s_local, keys)
    out = {"saliency_local": s_local, "saliency_global": s_global}
    layers.probe(self, "vid_pos", video_pos)
    layers.probe(self, "memory_amplified", memory)

    grid_rows = self._anchor_rows(video_mask)
    # Rows past the batch's padded grid do not exist in the official model: zero them so that the
    # FPN's convolutions see the same zero padding at the grid's end.
    levels, level_masks = self.fpn(jnp.where(grid_rows[..., None], memory, 0.0), video_mask)
    tokens = jnp.concatenate(levels, axis=1)
    sel = self.query_selector(tokens, level_masks)
    layers.probe(self, "fpn_levels", tuple(levels))
    layers.probe(self, "qsel_content", sel["content"])
    layers.probe(self, "qsel_reference", sel["reference"])
    out.update(enc_logits=sel["enc_logits"], enc_iou=sel["enc_iou"], enc_spans=sel["enc_spans"])
    content, reference = sel["content"], sel["reference"]

    anchor_mask = jnp.concatenate(self.fpn.level_masks(grid_rows), axis=1)
    if self.uses_atss:
      anchors_np, _ = atss.make_anchors(video_mask.shape[1], STRIDES, m.anchor_sizes)
      anchors = jnp.asarray(anchors_np)
      out.update(anchors=anchors, anchor_mask=anchor_mask)
    if m.atss:
      # With collab but without `atss` (ablation rows), the head exists for checkpoint parity
      # only: its untrained windows must not reach the fusion.
      head = self.aux_det_head(levels)
      out.update(atss_logits=jnp.concatenate([h[0][..., 0] for h in head], axis=1),
                 atss_deltas=jnp.concatenate([h[1] for h in head], axis=1),
                 atss_ctr=jnp.concatenate([h[2][..., 0] for h in head], axis=1))

    num_dn = num_co = dn_groups = 0
    dn_valid = co_valid = None
    prefix_content, prefix_ref = [], []
    if train:
      if self.uses_atss:
        level_sizes = [lvl.shape[1] for lvl in levels]
        labels, matched_gt = atss.batch_targets(
            batch["spans"], batch["span_mask"], batch["span_seconds"], batch["clip_len"], anchors,
            level_sizes, anchor_mask, m.atss_top_k, m.atss_gt_tolerance)
        out.update(atss_labels=labels, atss_gt=matched_gt)
      if m.denoise:
        dn_groups = query_groups.num_dn_groups(m.dn_budget, self.max_windows)
        dn = query_groups.denoise_queries(batch["spans"].astype(jnp.float32), batch["span_mask"],
                                          dn_groups, m.dn_noise, m.dn_negative_offset, keys.key())
        num_dn, dn_valid = dn["reference"].shape[1], dn["valid"]
        dn_content = jnp.where(dn["present"][..., None],
                               self.main_det_head.dn_label_enc[...].astype(dtype), 0.0)
        prefix_content.append(dn_content.astype(dtype))
        prefix_ref.append(dn["reference"])
        out.update(dn_label=dn["label"], dn_present=dn["present"], dn_target=dn["target"],
                   dn_valid=dn_valid)
      if m.collab:
        num_clips = video_mask.sum(axis=1)
        if m.collab_size <= 0:
          raise ValueError("model.collab_size is 0 (= size the collab group from the training "
                           "data): training sets it (training.collab_size); set "
                           "--config.model.collab_size=N to train a model outside that path")
        co = query_groups.collab_selection(labels, matched_gt, anchors, anchor_mask, num_clips,
                                           m.collab_size, keys.key())
        feats = jnp.take_along_axis(tokens, co["index"][..., None], axis=1)
        prefix_content.append(self.main_det_head.collab_content(feats))
        prefix_ref.append(co["reference"])
        num_co, co_valid = m.collab_size, co["valid"]
        out.update(co_label=co["label"], co_target=co["target"], co_valid=co_valid,
                   co_positives=labels.sum(axis=1).max())

    group_mask = None
    if num_dn or num_co:
      group_mask = query_groups.group_mask(num_dn, dn_groups, dn_valid, num_co, co_valid,
                                           m.num_queries)
      content = jnp.concatenate(prefix_content + [content], axis=1)
      reference = jnp.concatenate(prefix_ref + [reference.astype(jnp.float32)], axis=1)
    logits, spans, iou = self.main_det_head(content, reference, memory, video_pos, video_mask,
                                            group_mask, keys)
    q0 = num_dn + num_co
    out.update(pred_logits=logits[:, :, q0:], pred_spans=spans[:, :, q0:])
    if iou is not None:
      out["pred_iou"] = iou[:, :, q0:]
    if num_dn:
      out.update(dn_logits=logits[:, :, :num_dn], dn_spans=spans[:, :, :num_dn])
    if num_co:
      out.update(co_logits=logits[:, :, num_dn:q0], co_spans=spans[:, :, num_dn:q0])

    if train:
      out.update(self._negative_pass(v0, v1, video_pos, video_mask, t1, text_mask, f_sent, keys))
      relevant = (batch["saliency"] > 0) & video_mask
      out["sentence"] = self.sent_encoder(t1, text_mask, keys)
      out["moment"], _, out["moment_memory"] = self.moment_encoder(v1, video_pos, video_mask,
                                                                   relevant, keys)
    return out

  def _negative_pass(self, v0, v1, video_pos, video_mask, t1, text_mask, f_sent, keys):
    """Saliency of every video against the next sample's text (QD-DETR negatives, §3.12)."""
    roll = lambda x: jnp.roll(x, -1, axis=0)
    video = v1 if self.cfg.negative_local_from_embedded else v0  # A13
    s_local = self.local_saliency_head.score(roll(f_sent), video)
    s_global, _ = self._encode(v1, video_pos, video_mask, roll(t1), roll(text_mask), s_local, keys)
    return {"saliency_local_neg": s_local, "saliency_global_neg": s_global}


def create(config, rng_seed: int | None = None) -> SGDETR:
  """Builds the model of a full config (`config.model` + the data's input widths)."""
  from sg_detr_jax.data.pipeline import model_input_dims  # local: keeps models free of data deps
  video_dim, text_dim = model_input_dims(config.data)
  seed = config.seed if rng_seed is None else rng_seed
  return SGDETR(config.model, video_dim, text_dim, config.data.max_windows, nnx.Rngs(seed))
