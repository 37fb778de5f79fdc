"""The total SG-DETR objective, eq. (15) (architecture.md §6.5), from the model's training outputs.

Every term is returned unweighted under a stable name (logged as is). `weights_table` is the one
explicit table from term name to weight, built from `config.loss` for the terms this config has:
  sal_{local,global}_{bce,neg,margin,rank}           x saliency
  {span,giou,label,quality}_{0..N-1}                 x span / giou / label / quality (per layer)
  enc_{span,giou,label,quality}                      x the same, x encoder_coef
  co_{label,span,giou}_{l}, dn_{label,span,giou}_{l} x the same, x collab_coef / denoise_coef
  atss_{label,span,giou,ctrness}                     x atss_*
  ms_align, momcls                                   x ms_align / momcls
A term without a weight, or a weight without a term, is an error (`compute_losses`).
"""

from __future__ import annotations

import jax.numpy as jnp

from sg_detr_jax.losses import alignment, detection, saliency
from sg_detr_jax.losses.matching import hungarian, match_cost
from sg_detr_jax.models.atss import Targets
from sg_detr_jax.models.outputs import TrainOutputs

SALIENCY_TERMS = ("bce", "neg", "margin", "rank")
GROUP_TERMS = ("label", "span", "giou")
ATSS_TERMS = ("label", "span", "giou", "ctrness")


def weights_table(config, num_layers: int) -> dict[str, float]:
  """{term name: weight} of every term the objective of `config` has (N = `num_layers` decoder
  layers; the quality terms with the IoU head, the groups and the ATSS head when enabled)."""
  lw, m = config.loss, config.model
  set_terms = {"span": lw.span, "giou": lw.giou, "label": lw.label}
  if m.iou_head:
    set_terms["quality"] = lw.quality
  heads = ("local", "global") if m.global_saliency else ("local",)
  table = {f"sal_{h}_{t}": lw.saliency for h in heads for t in SALIENCY_TERMS}
  table.update({f"{t}_{i}": w for i in range(num_layers) for t, w in set_terms.items()})
  # The query selector always has its IoU branch.
  table.update({f"enc_{t}": lw.encoder_coef * w
                for t, w in dict(set_terms, quality=lw.quality).items()})
  for group, on, coef in (("co", m.collab, lw.collab_coef), ("dn", m.denoise, lw.denoise_coef)):
    if on:
      table.update({f"{group}_{t}_{i}": coef * set_terms[t]
                    for i in range(num_layers) for t in GROUP_TERMS})
  if m.atss:
    table.update({f"atss_{t}": lw[f"atss_{t}"] for t in ATSS_TERMS})
  table.update(ms_align=lw.ms_align, momcls=lw.momcls)
  return {k: float(v) for k, v in table.items()}


def compute_losses(out: TrainOutputs, targets: Targets | None, batch: dict, config, mesh=None
                   ) -> tuple[jnp.ndarray, dict]:
  """Total loss and the dict of unweighted terms (all f32 scalars).

  `targets`: the batch's ATSS assignment (`atss.training_targets`), needed with `model.atss`.
  `mesh`: the data-parallel mesh when the batch is sharded (the matcher then runs per shard).
  """
  lw = config.loss
  f32 = lambda x: x.astype(jnp.float32) if x is not None else None  # noqa: E731
  p = out.predictions
  mask = batch["video_mask"].astype(bool)
  y = batch["saliency"]
  real_neg = saliency.real_negatives(batch["source_id"], batch["batch_mask"])
  gt, gt_mask = batch["spans"].astype(jnp.float32), batch["span_mask"].astype(bool)
  terms = {}

  # Without the global head (ablation rows a-c) the official code computes the local terms only.
  heads = {"local": (p.saliency_local, out.saliency_local_neg)}
  if config.model.global_saliency:
    heads["global"] = (p.saliency_global, out.saliency_global_neg)
  for head, (s, s_neg) in heads.items():
    hd = saliency.saliency_losses(f32(s), f32(s_neg), y, mask, batch["pos_idx"], batch["neg_idx"],
                                  real_neg, lw)
    terms.update({f"sal_{head}_{k}": v for k, v in hd.items()})

  # One host round trip matches every decoder layer and the encoder proposals.
  logits, spans, iou = f32(p.pred_logits), f32(p.pred_spans), f32(p.pred_iou)
  enc = (f32(p.enc_spans), f32(p.enc_logits), f32(p.enc_iou))
  num_layers = logits.shape[0]
  layer_iou = lambda i: None if iou is None else iou[i]  # noqa: E731
  costs = [match_cost(spans[i], logits[i], layer_iou(i), gt, lw) for i in range(num_layers)]
  costs.append(match_cost(*enc, gt, lw))
  matches = hungarian(jnp.stack(costs), gt_mask[None], mesh,
                      config.mesh.data_axis if mesh is not None else None, batch_dim=1)
  for i in range(num_layers):
    layer = detection.set_losses(logits[i], spans[i], layer_iou(i), gt, gt_mask, matches[i],
                                 lw.background_weight)
    terms.update({f"{k}_{i}": v for k, v in layer.items()})
  enc_terms = detection.set_losses(enc[1], enc[0], enc[2], gt, gt_mask, matches[-1],
                                   lw.background_weight)
  terms.update({f"enc_{k}": v for k, v in enc_terms.items()})

  for name, group in (("co", out.collab), ("dn", out.denoise)):
    if group is None:
      continue
    valid = jnp.broadcast_to(group.valid[None], group.label.shape)
    for i in range(num_layers):
      g = detection.group_losses(f32(group.logits[i]), f32(group.spans[i]), group.label,
                                 group.target, valid)
      terms.update({f"{name}_{k}_{i}": v for k, v in g.items()})

  if config.model.atss:
    terms.update({f"atss_{k}": v for k, v in detection.atss_losses(p, targets, lw).items()})

  relevant = (y > 0) & mask
  terms["ms_align"] = alignment.moment_sentence_alignment(
      f32(out.moment), f32(out.sentence), lw.align_focal_alpha, lw.align_focal_gamma)
  terms["momcls"] = alignment.moment_clip_classification(f32(out.moment), f32(out.moment_memory),
                                                         relevant, mask)
  table = weights_table(config, num_layers)
  if table.keys() != terms.keys():
    raise ValueError(f"loss terms without a weight: {sorted(terms.keys() - table.keys())}; "
                     f"weights without a term: {sorted(table.keys() - terms.keys())}")
  total = sum(table[k] * v for k, v in terms.items())
  return total, terms
