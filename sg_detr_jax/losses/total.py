"""The total SG-DETR objective, eq. (15) (architecture.md §6.5), from the model's output dict.

Every term is returned unweighted under a stable name (logged as is); the weights table comes from
`config.loss` alone:
  sal_{local,global}_{bce,neg,margin,rank}           x saliency
  {span,giou,label,quality}_{0..N-1}                 x span / giou / label / quality (per layer)
  enc_{span,giou,label,quality}                      x the same, x encoder_coef
  co_{label,span,giou}_{l}, dn_{label,span,giou}_{l} x the same, x collab_coef / denoise_coef
  atss_{label,span,giou,ctrness}                     x atss_*
  ms_align, momcls                                   x ms_align / momcls
"""

from __future__ import annotations

import jax.numpy as jnp

from sg_detr_jax.losses import alignment, detection, saliency
from sg_detr_jax.losses.matching import hungarian, match_cost


def _base_weight(name: str, lw) -> float:
  return {"span": lw.span, "giou": lw.giou, "label": lw.label, "quality": lw.quality}[name]


def weights_table(term_names, lw) -> dict[str, float]:
  """The weight of every term name (see the module docstring)."""
  table = {}
  for name in term_names:
    if name.startswith("sal_"):
      w = lw.saliency
    elif name.startswith("atss_"):
      w = {"atss_label": lw.atss_label, "atss_span": lw.atss_span, "atss_giou": lw.atss_giou,
           "atss_ctrness": lw.atss_ctrness}[name]
    elif name in ("ms_align", "momcls"):
      w = lw[name]
    elif name.startswith("enc_"):
      w = lw.encoder_coef * _base_weight(name[4:], lw)
    elif name.startswith("co_"):
      w = lw.collab_coef * _base_weight(name.split("_")[1], lw)
    elif name.startswith("dn_"):
      w = lw.denoise_coef * _base_weight(name.split("_")[1], lw)
    else:
      w = _base_weight(name.split("_")[0], lw)
    table[name] = float(w)
  return table


def compute_losses(out: dict, batch: dict, config, mesh=None) -> tuple[jnp.ndarray, dict]:
  """Total loss and the dict of unweighted terms (all f32 scalars).

  `mesh`: the data-parallel mesh when the batch is sharded (the matcher then runs per shard).
  """
  lw = config.loss
  out = {k: (v.astype(jnp.float32) if jnp.issubdtype(v.dtype, jnp.floating) else v)
         for k, v in out.items()}
  mask = batch["video_mask"].astype(bool)
  y = batch["saliency"]
  real_neg = saliency.real_negatives(batch["source_id"], batch["batch_mask"])
  gt, gt_mask = batch["spans"].astype(jnp.float32), batch["span_mask"].astype(bool)
  terms = {}

  # Without the global head (ablation rows a-c) the official code computes the local terms only.
  for head in ("local", "global") if config.model.global_saliency else ("local",):
    hd = saliency.saliency_losses(out[f"saliency_{head}"], out[f"saliency_{head}_neg"], y, mask,
                                  batch["pos_idx"], batch["neg_idx"], real_neg, lw)
    terms.update({f"sal_{head}_{k}": v for k, v in hd.items()})

  # One host round trip matches every decoder layer and the encoder proposals.
  num_layers = out["pred_logits"].shape[0]
  pred_iou = out.get("pred_iou")
  costs = [match_cost(out["pred_spans"][i], out["pred_logits"][i],
                      None if pred_iou is None else pred_iou[i], gt, lw) for i in range(num_layers)]
  costs.append(match_cost(out["enc_spans"], out["enc_logits"], out["enc_iou"], gt, lw))
  matches = hungarian(jnp.stack(costs), gt_mask[None], mesh,
                      config.mesh.data_axis if mesh is not None else None, batch_dim=1)
  for i in range(num_layers):
    layer = detection.set_losses(out["pred_logits"][i], out["pred_spans"][i],
                                 None if pred_iou is None else pred_iou[i], gt, gt_mask,
                                 matches[i], lw.background_weight)
    terms.update({f"{k}_{i}": v for k, v in layer.items()})
  enc = detection.set_losses(out["enc_logits"], out["enc_spans"], out["enc_iou"], gt, gt_mask,
                             matches[-1], lw.background_weight)
  terms.update({f"enc_{k}": v for k, v in enc.items()})

  for group, valid_key in (("co", "co_valid"), ("dn", "dn_valid")):
    if f"{group}_logits" not in out:
      continue
    valid = jnp.broadcast_to(out[valid_key][None], out[f"{group}_label"].shape)
    for i in range(num_layers):
      g = detection.group_losses(out[f"{group}_logits"][i], out[f"{group}_spans"][i],
                                 out[f"{group}_label"], out[f"{group}_target"], valid)
      terms.update({f"{group}_{k}_{i}": v for k, v in g.items()})

  if "atss_labels" in out and config.model.atss:
    terms.update({f"atss_{k}": v for k, v in detection.atss_losses(out, lw).items()})

  relevant = (y > 0) & mask
  terms["ms_align"] = alignment.moment_sentence_alignment(
      out["moment"], out["sentence"], lw.align_focal_alpha, lw.align_focal_gamma)
  terms["momcls"] = alignment.moment_clip_classification(out["moment"], out["moment_memory"],
                                                         relevant, mask)
  table = weights_table(terms, lw)
  total = sum(table[k] * v for k, v in terms.items())
  return total, terms
