"""Predictions for a whole split: jitted forward on padded batches, host post-processing, records
in the official submission format (one list per head: WBF-fused and DETR-only)."""

from __future__ import annotations

import jax
import numpy as np

from sg_detr_jax.data.pipeline import device_arrays, eval_dataset, eval_view
from sg_detr_jax.evaluation.submission import make_record
from sg_detr_jax.inference.postprocess import sample_windows


def _qid(qid: str, qid_type: str):
  return int(qid) if qid_type == "int" else qid


def records_for_batch(out: dict, batch: dict, pp, qid_type: str, with_saliency: bool):
  """{"fused": [...], "detr": [...]} records of the real rows of one batch."""
  res = {"fused": [], "detr": []}
  for i in np.flatnonzero(batch["batch_mask"]):
    meta = {k: v[i] for k, v in batch["meta"].items()}
    windows = sample_windows(out, i, float(batch["span_seconds"][i]), float(batch["clip_len"][i]),
                             float(batch["duration"][i]), pp)
    n = int(batch["num_clips"][i])
    sal = out["saliency_global"][i, :n] if with_saliency else None
    for head in res:
      res[head].append(make_record(_qid(meta["qid"], qid_type), meta["query"], meta["vid"],
                                   windows[head], sal))
  return res


def predict_split(predict_step, params, config, split: str, progress=None):
  """Runs the model on `split` of `config.data`; returns ({"fused", "detr"} records, metadata)."""
  ds, metadata = eval_dataset(config.data, split, config.train.eval_batch_size)
  with_saliency = eval_view(config.data).dataset in ("qvhighlights", "youtube_hl", "tvsum")
  res = {"fused": [], "detr": []}
  for batch in (progress(ds) if progress else ds):
    out = jax.device_get(predict_step(params, device_arrays(batch)))
    for head, recs in records_for_batch(out, batch, config.postprocess,
                                        metadata.get("qid_type", "int"), with_saliency).items():
      res[head].extend(recs)
  return res, metadata
