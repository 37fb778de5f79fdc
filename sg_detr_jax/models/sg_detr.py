"""SG-DETR, the whole model (architecture.md §1, §3): one `nnx.Module`, batch-first, static shapes.

The forward reads as its four stages:
  encode     input projections -> local saliency (eq. 1-2) -> modality embeddings -> SGCA (eq. 3-5)
             -> detector encoder (eq. 6) -> saliency amplifier / global saliency (eq. 7-9)
  propose    FPN -> query selector proposals, ATSS head
  decode     [training: DN + collab query groups, the group attention mask] -> DETR decoder
  auxiliary  training only: the negative-text pass and the CG-DETR alignment branches
Inference returns `outputs.Predictions`; training returns `outputs.TrainOutputs` (the predictions
plus the query groups, the negative pass and the alignment embeddings). The ATSS assignment is not
part of the model: it depends on the ground truth and the anchors only, and the training step
computes it (`atss.training_targets`) for both the collab group and the losses.

Under `nnx.capture(model, nnx.Intermediate)` the stages also sow their outputs (`layers.probe`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from sg_detr_jax.models import atss, layers, matmul, query_groups
from sg_detr_jax.models.alignment import MomentEncoder, SentenceEncoder
from sg_detr_jax.models.atss_head import ATSSHead
from sg_detr_jax.models.detr_head import DETRHead
from sg_detr_jax.models.fpn import FPN, STRIDES
from sg_detr_jax.models.input_projection import InputProjection
from sg_detr_jax.models.local_saliency import LocalSaliencyHead
from sg_detr_jax.models.outputs import Predictions, QueryGroup, TrainOutputs
from sg_detr_jax.models.query_selector import QuerySelector
from sg_detr_jax.models.sgca import SGCAEncoder
from sg_detr_jax.models.transformer import Encoder, saliency_amplify


class Encoded(NamedTuple):
  """The `encode` stage: projected inputs (v0 [B, L, d], t0 [B, Lt, d]), the same after the
  modality embedding (v1, t1), the sentence token f_sent [B, d], video_pos [B, L, d], the masks,
  saliency logits s_local / s_global [B, L] and the amplified memory [B, L, d]."""
  v0: jax.Array
  t0: jax.Array
  v1: jax.Array
  t1: jax.Array
  f_sent: jax.Array
  video_pos: jax.Array
  video_mask: jax.Array
  text_mask: jax.Array
  s_local: jax.Array
  s_global: jax.Array
  memory: jax.Array


class Proposals(NamedTuple):
  """The `propose` stage: FPN tokens [B, A, d] (levels concatenated), the query selector's content
  [B, Q, d] / unsigmoided reference [B, Q, 2] and proposals (enc_* [B, Q(, 2)]), the anchors
  [A, 2] / anchor_mask [B, A] and the ATSS head's outputs (None when not run)."""
  tokens: jax.Array
  content: jax.Array
  reference: jax.Array
  enc_logits: jax.Array
  enc_iou: jax.Array
  enc_spans: jax.Array
  anchors: jax.Array | None
  anchor_mask: jax.Array | None
  atss_logits: jax.Array | None
  atss_deltas: jax.Array | None
  atss_ctr: jax.Array | None


class ExtraQueries(NamedTuple):
  """Training query groups placed before the regular queries: content [B, T, d], unsigmoided
  reference [B, T, 2] (T = num_dn + num_co), the [T+Q, T+Q] attention mask, the DN and collab
  targets (dicts of `query_groups`) and the collab group's official size max_b |P_b|."""
  content: jax.Array
  reference: jax.Array
  mask: jax.Array
  num_dn: int
  num_co: int
  dn: dict | None
  co: dict | None
  co_positives: jax.Array | None


class UnusedTextPositionEmbedding(nnx.Module):
  """The official model instantiates a learned text PE (100 x d + LN) and never uses it
  (`use_txt_pos=False`); kept so parameter counts and checkpoints map one to one."""

  def __init__(self, d, max_len, rngs):
    self.position_embeddings = nnx.Param(layers.normal(1.0)(rngs.params(), (max_len, d)))
    self.norm = layers.layer_norm(d, rngs)


class SGDETR(nnx.Module):
  """The full model; `config.model` (see configs/base.py) sets every size and switch.

  The model keeps `config.model` as an immutable, hashable `ml_collections.FrozenConfigDict`
  (`self.cfg`), so its graph definition is hashable too.
  """

  def __init__(self, m, video_dim: int, text_dim: int, max_windows: int, rngs: nnx.Rngs):
    if tuple(m.fpn_strides) != STRIDES:
      raise ValueError(f"model.fpn_strides must be {STRIDES} (the FPN's fixed levels)")
    # A snapshot of the values: frozen from a ConfigDict, it would hash through that (mutable) dict.
    m = ml_collections.FrozenConfigDict(m.to_dict())
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
      # .get: the config.json of a workdir trained before the switch existed has none.
      self.aux_det_head = ATSSHead(d, m.atss_convs, len(STRIDES), m.prior_prob, rngs,
                                   m.get("conv_algorithm", "direct"))
    self.sent_encoder = SentenceEncoder(d, m.num_heads, m.ffn_dim, m.sentence_layers, m.dropout,
                                        m.drop_path, rngs)
    self.moment_encoder = MomentEncoder(d, m.num_heads, m.ffn_dim, m.moment_layers, m.dropout,
                                        m.drop_path, rngs)
    matmul.set_operand_dtype(self, m.matmul_dtype)

  @staticmethod
  def params_without_gradient() -> tuple[str, ...]:
    """Dotted prefixes of the parameters that the training loss never reaches.

    The official optimizer leaves them untouched, weight decay included: the unused text PE. (The
    collab mapper has no gradient in an eval-mode loss only, which training never computes.)
    """
    return ("txt_position_embed",)

  @property
  def uses_atss(self) -> bool:
    """The ATSS head exists (its anchors feed the fusion and / or the collab group)."""
    return bool(self.cfg.atss or self.cfg.collab)

  # -- forward -----------------------------------------------------------------------------------
  def __call__(self, batch: dict, key: jax.Array | None = None, train: bool = False,
               atss_targets: atss.Targets | None = None,
               grid_len: jax.Array | None = None) -> Predictions | TrainOutputs:
    """Runs the model: encode -> propose -> decode (-> auxiliary branches in training).

    Args:
      batch: video [B, L, Dv], video_mask [B, L], text [B, Lt, Dt], text_mask [B, Lt]; in training
        also spans [B, W, 2], span_mask [B, W] (denoising queries) and saliency [B, L].
      key: PRNG key for dropout / DropPath / collab negatives / DN noise (training).
      train: training mode (stochastic layers, query groups, negative pass, alignment branches).
      atss_targets: `atss.training_targets(batch, config.model)`; training with collab only.
      grid_len: int scalar, the ATSS grid length of the whole batch when `batch` is a part of it
        (`atss.grid_rows`; inference microbatches); by default this batch's own.

    Returns:
      `Predictions` (inference) or `TrainOutputs` (training).
    """
    if train and key is None:
      raise ValueError("training mode needs a PRNG key")
    if train and self.cfg.collab and atss_targets is None:
      raise ValueError("training with model.collab needs the ATSS targets: "
                       "model(batch, key, train=True, atss_targets=atss.training_targets(...))")
    keys = layers.KeySeq(key if train else None)
    enc = self.encode(batch, keys)
    prop = self.propose(enc, grid_len)
    extra = self.training_queries(batch, enc, prop, atss_targets, keys) if train else None
    predictions, groups = self.decode(enc, prop, extra, keys)
    if not train:
      return predictions
    return self.auxiliary(batch, enc, predictions, groups, extra, keys)

  # -- stages ------------------------------------------------------------------------------------
  def encode(self, batch: dict, keys: layers.KeySeq) -> Encoded:
    """Inputs -> saliency logits and the amplified memory (eq. 1-9)."""
    m = self.cfg
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
    s_global, memory = self._saliency_memory(v1, video_pos, video_mask, t1, text_mask, s_local,
                                             keys)
    layers.probe(self, "vid_pos", video_pos)
    layers.probe(self, "memory_amplified", memory)
    return Encoded(v0, t0, v1, t1, f_sent, video_pos, video_mask, text_mask, s_local, s_global,
                   memory)

  def _saliency_memory(self, v1, video_pos, video_mask, t1, text_mask, s_local, keys):
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

  def propose(self, enc: Encoded, grid_len: jax.Array | None = None) -> Proposals:
    """Memory -> FPN levels -> query-selector proposals and the ATSS head's windows."""
    m = self.cfg
    grid_rows = atss.grid_rows(enc.video_mask, m.atss_anchor_grid, grid_len)
    # Rows past the batch's padded grid do not exist in the official model: zero them so that the
    # FPN's convolutions see the same zero padding at the grid's end.
    levels, level_masks = self.fpn(jnp.where(grid_rows[..., None], enc.memory, 0.0),
                                   enc.video_mask)
    tokens = jnp.concatenate(levels, axis=1)
    sel = self.query_selector(tokens, level_masks)
    layers.probe(self, "fpn_levels", tuple(levels))
    layers.probe(self, "qsel_content", sel["content"])
    layers.probe(self, "qsel_reference", sel["reference"])
    anchors = anchor_mask = atss_logits = atss_deltas = atss_ctr = None
    if self.uses_atss:
      anchors, anchor_mask = atss.anchor_grid(enc.video_mask, m, grid_len)
    if m.atss:
      # With collab but without `atss` (ablation rows), the head exists for checkpoint parity
      # only: its untrained windows must not reach the fusion.
      head = self.aux_det_head(levels)
      atss_logits = jnp.concatenate([h[0][..., 0] for h in head], axis=1)
      atss_deltas = jnp.concatenate([h[1] for h in head], axis=1)
      atss_ctr = jnp.concatenate([h[2][..., 0] for h in head], axis=1)
    return Proposals(tokens, sel["content"], sel["reference"], sel["enc_logits"], sel["enc_iou"],
                     sel["enc_spans"], anchors, anchor_mask, atss_logits, atss_deltas, atss_ctr)

  def training_queries(self, batch: dict, enc: Encoded, prop: Proposals,
                       targets: atss.Targets | None, keys: layers.KeySeq) -> ExtraQueries | None:
    """The DN (with `model.denoise`) and collab (with `model.collab`) query groups and the mask
    that keeps them from seeing each other and the regular queries; None when both are off."""
    m = self.cfg
    dtype = enc.memory.dtype
    contents, refs = [], []
    dn = co = co_positives = None
    num_dn = num_co = dn_groups = 0
    if m.denoise:
      dn_groups = query_groups.num_dn_groups(m.dn_budget, self.max_windows)
      dn = query_groups.denoise_queries(batch["spans"].astype(jnp.float32), batch["span_mask"],
                                        dn_groups, m.dn_noise, m.dn_negative_offset, keys.key())
      num_dn = dn["reference"].shape[1]
      contents.append(jnp.where(dn["present"][..., None],
                                self.main_det_head.dn_label_enc[...].astype(dtype),
                                0.0).astype(dtype))
      refs.append(dn["reference"])
    if m.collab:
      if m.collab_size <= 0:
        raise ValueError("model.collab_size is 0 (= size the collab group from the training "
                         "data): training sets it (training.collab_size); set "
                         "--config.model.collab_size=N to train a model outside that path")
      co = query_groups.collab_selection(targets.labels, targets.gt, targets.anchors,
                                         targets.anchor_mask, enc.video_mask.sum(axis=1),
                                         m.collab_size, keys.key())
      feats = jnp.take_along_axis(prop.tokens, co["index"][..., None], axis=1)
      contents.append(self.main_det_head.collab_content(feats))
      refs.append(co["reference"])
      num_co, co_positives = m.collab_size, targets.labels.sum(axis=1).max()
    if not (num_dn or num_co):
      return None
    mask = query_groups.group_mask(num_dn, dn_groups, None if dn is None else dn["valid"], num_co,
                                   None if co is None else co["valid"], m.num_queries)
    return ExtraQueries(jnp.concatenate(contents, axis=1), jnp.concatenate(refs, axis=1), mask,
                        num_dn, num_co, dn, co, co_positives)

  def decode(self, enc: Encoded, prop: Proposals, extra: ExtraQueries | None,
             keys: layers.KeySeq) -> tuple[Predictions, dict[str, QueryGroup]]:
    """One decoder pass over [extra groups | regular queries], split back into the predictions
    and the training groups ({"denoise": ..., "collab": ...}, the ones present)."""
    content, reference, mask, q0 = prop.content, prop.reference, None, 0
    if extra is not None:
      content = jnp.concatenate([extra.content, content], axis=1)
      reference = jnp.concatenate([extra.reference, reference.astype(jnp.float32)], axis=1)
      mask, q0 = extra.mask, extra.num_dn + extra.num_co
    logits, spans, iou = self.main_det_head(content, reference, enc.memory, enc.video_pos,
                                            enc.video_mask, mask, keys)
    predictions = Predictions(
        saliency_local=enc.s_local, saliency_global=enc.s_global,
        pred_logits=logits[:, :, q0:], pred_spans=spans[:, :, q0:],
        pred_iou=None if iou is None else iou[:, :, q0:],
        enc_logits=prop.enc_logits, enc_iou=prop.enc_iou, enc_spans=prop.enc_spans,
        atss_logits=prop.atss_logits, atss_deltas=prop.atss_deltas, atss_ctr=prop.atss_ctr,
        anchors=prop.anchors, anchor_mask=prop.anchor_mask)
    groups = {}
    if extra is not None and extra.num_dn:
      n, dn = extra.num_dn, extra.dn
      groups["denoise"] = QueryGroup(logits[:, :, :n], spans[:, :, :n], dn["label"], dn["target"],
                                     dn["valid"], dn["present"])
    if extra is not None and extra.num_co:
      n, co = extra.num_dn, extra.co
      groups["collab"] = QueryGroup(logits[:, :, n:q0], spans[:, :, n:q0], co["label"],
                                    co["target"], co["valid"])
    return predictions, groups

  def auxiliary(self, batch: dict, enc: Encoded, predictions: Predictions,
                groups: dict[str, QueryGroup], extra: ExtraQueries | None,
                keys: layers.KeySeq) -> TrainOutputs:
    """Training branches: the negative-text pass and the CG-DETR alignment embeddings."""
    s_local_neg, s_global_neg = self._negative_pass(enc, keys)
    relevant = (batch["saliency"] > 0) & enc.video_mask
    sentence = self.sent_encoder(enc.t1, enc.text_mask, keys)
    moment, _, moment_memory = self.moment_encoder(enc.v1, enc.video_pos, enc.video_mask,
                                                   relevant, keys)
    return TrainOutputs(
        predictions=predictions, saliency_local_neg=s_local_neg,
        saliency_global_neg=s_global_neg, sentence=sentence, moment=moment,
        moment_memory=moment_memory, collab=groups.get("collab"), denoise=groups.get("denoise"),
        collab_positives=None if extra is None else extra.co_positives)

  def _negative_pass(self, enc: Encoded, keys):
    """Saliency [B, L] (local, global) of every video against the next sample's text (QD-DETR
    negatives, §3.12)."""
    roll = lambda x: jnp.roll(x, -1, axis=0)
    video = enc.v1 if self.cfg.negative_local_from_embedded else enc.v0  # A13
    s_local = self.local_saliency_head.score(roll(enc.f_sent), video)
    s_global, _ = self._saliency_memory(enc.v1, enc.video_pos, enc.video_mask, roll(enc.t1),
                                        roll(enc.text_mask), s_local, keys)
    return s_local, s_global


def create(config, rng_seed: int | None = None) -> SGDETR:
  """Builds the model of a full config (`config.model` + the data's input widths)."""
  from sg_detr_jax.data.pipeline import model_input_dims  # local: keeps models free of data deps
  video_dim, text_dim = model_input_dims(config.data)
  seed = config.seed if rng_seed is None else rng_seed
  return SGDETR(config.model, video_dim, text_dim, config.data.max_windows, nnx.Rngs(seed))
