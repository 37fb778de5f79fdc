"""Predictions for a whole split: jitted forward on padded batches, host post-processing (of each
batch while the device computes the next ones, `train.eval_batches_ahead`), records in the official
submission format (one list per head: WBF-fused and DETR-only)."""

from __future__ import annotations

import jax
import numpy as np

from sg_detr_jax.data.pipeline import device_arrays, eval_dataset, eval_view
from sg_detr_jax.evaluation.submission import make_record
from sg_detr_jax.inference.overlap import batches_ahead, overlapped
from sg_detr_jax.inference.postprocess import batch_windows, saliency_scores


def _qid(qid: str, qid_type: str):
  return int(qid) if qid_type == "int" else qid


def records_for_batch(out: dict, batch: dict, pp, qid_type: str, with_saliency: bool):
  """{"fused": [...], "detr": [...]} records of the real rows of one batch.

  Official convention (`pp.convention`): the lists are written in the official order and with the
  official values (no re-sorting, no rounding beyond the post-processor's); ranked: sorted by score
  and rounded to 4 decimals.
  """
  rows = np.flatnonzero(batch["batch_mask"])
  windows = batch_windows(out, rows, batch["span_seconds"][rows], batch["clip_len"][rows],
                          batch["duration"][rows], pp)
  sal = (saliency_scores(out, rows, batch["num_clips"][rows],
                         np.asarray(batch["video_mask"])[rows].sum(1), pp)
         if with_saliency else [None] * len(rows))
  ranked = pp.convention == "ranked"
  res = {"fused": [], "detr": []}
  for i, w, s in zip(rows, windows, sal):
    meta = {k: v[i] for k, v in batch["meta"].items()}
    for head in res:
      res[head].append(make_record(_qid(meta["qid"], qid_type), meta["query"], meta["vid"],
                                   w[head], s, sort=ranked, decimals=4 if ranked else None))
  return res


def predict_split(predict_step, params, config, split: str, progress=None):
  """Runs the model on `split` of `config.data`; returns ({"fused", "detr"} records, metadata)."""
  ds, metadata = eval_dataset(config.data, split, config.train.eval_batch_size)
  with_saliency = eval_view(config.data).dataset in ("qvhighlights", "youtube_hl", "tvsum")
  qid_type = metadata.get("qid_type", "int")

  def finish(batch, out):
    return records_for_batch(jax.device_get(out), batch, config.postprocess, qid_type,
                             with_saliency)

  res = {"fused": [], "detr": []}
  for records in overlapped(progress(ds) if progress else ds,
                            lambda batch: predict_step(params, device_arrays(batch)), finish,
                            batches_ahead(config)):
    for head, recs in records.items():
      res[head].extend(recs)
  return res, metadata
