"""Names of the official SG-DETR's outputs and loss terms, mapped to ours in one place.

The official `SetCriterion` logs, e.g., `loss_span` (final decoder layer), `loss_span_0` /
`loss_span_1` (decoder layers 1 and 2), `enc_loss_span` (query-selector proposals, ALREADY scaled
by the 0.5 encoder factor), `aux_loss_*` (ATSS head) and `log_saliency_*` (the eight saliency
parts whose sum is `loss_saliency`). Our `losses.total.compute_losses` returns every term
unweighted under its own name (`span_2`, `enc_span`, `atss_span`, `sal_local_rank`, ...).
"""

from __future__ import annotations

import numpy as np

from sg_detr_jax.models.outputs import Predictions

# Saliency parts: official log name -> our term (per head).
_SALIENCY = {
    "log_saliency_bce_{h}": "sal_{h}_bce",
    "log_saliency_neg_pair_{h}": "sal_{h}_neg",
    "log_margin_saliency_{h}": "sal_{h}_margin",
    "log_saliency_contrastive_{h}": "sal_{h}_rank",
}
_DETR = ("span", "giou", "label", "quality")
_ATSS = ("label", "span", "giou", "ctrness")


def loss_terms(num_decoder_layers: int, heads=("local", "global")) -> dict[str, tuple[str, str]]:
  """{official term: (our term, scale key)}: official value = ours * loss_cfg[scale key] (or 1).

  The scale is "encoder_coef" for the `enc_loss_*` terms (logged after that factor), else "".
  """
  table = {}
  for h in heads:
    for theirs, ours in _SALIENCY.items():
      table[theirs.format(h=h)] = (ours.format(h=h), "")
  last = num_decoder_layers - 1
  for k in _DETR:
    table[f"loss_{k}"] = (f"{k}_{last}", "")
    for i in range(last):
      table[f"loss_{k}_{i}"] = (f"{k}_{i}", "")
    table[f"enc_loss_{k}"] = (f"enc_{k}", "encoder_coef")
  for k in _ATSS:
    table[f"aux_loss_{k}"] = (f"atss_{k}", "")
  table["loss_ms_align"] = ("ms_align", "")
  table["loss_momcls"] = ("momcls", "")
  return table


def to_official_terms(terms: dict, loss_cfg, num_decoder_layers: int) -> dict[str, float]:
  """Our unweighted terms -> the official logged values (see `loss_terms`), plus the official
  `loss_saliency` (the sum of the saliency parts)."""
  heads = tuple(h for h in ("local", "global") if f"sal_{h}_bce" in terms)
  out = {}
  for theirs, (ours, scale) in loss_terms(num_decoder_layers, heads).items():
    if ours in terms:
      out[theirs] = float(terms[ours]) * (float(loss_cfg[scale]) if scale else 1.0)
  out["loss_saliency"] = float(sum(float(v) for k, v in terms.items() if k.startswith("sal_")))
  return out


def head_outputs(forward: dict, num_levels: int, anchor_mask: np.ndarray | None = None
                 ) -> Predictions:
  """Official forward arrays (`hd/`, `detr/`, `enc/`, `atss/` names of the golden files) as our
  `Predictions`: [layers, B, Q] logits without the trailing 1, ATSS levels concatenated.
  `anchor_mask` [B, A]: the ATSS candidates (the official files do not store them)."""
  squeeze = lambda x: np.asarray(x)[..., 0]
  levels = range(num_levels)
  return Predictions(**{
      "saliency_local": np.asarray(forward["hd/local_saliency"]),
      "saliency_global": np.asarray(forward["hd/global_saliency"]),
      "pred_logits": squeeze(forward["detr/logits"]),
      "pred_iou": squeeze(forward["detr/iou_logits"]),
      "pred_spans": np.asarray(forward["detr/spans_cxw"]),
      "enc_logits": squeeze(forward["enc/logits"]),
      "enc_iou": squeeze(forward["enc/iou_logits"]),
      "enc_spans": np.asarray(forward["enc/spans_cxw"]),
      "atss_logits": np.concatenate([squeeze(forward[f"atss/cls_l{k}"]) for k in levels], 1),
      "atss_deltas": np.concatenate([forward[f"atss/reg_l{k}"] for k in levels], 1),
      "atss_ctr": np.concatenate([squeeze(forward[f"atss/ctr_l{k}"]) for k in levels], 1),
      "anchors": np.concatenate([forward[f"atss/anchors_l{k}"] for k in levels], 0),
      "anchor_mask": anchor_mask,
  })
