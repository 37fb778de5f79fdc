"""Prediction records in the official submission format (reference.md §5 steps 3, 6, 7)."""

from __future__ import annotations

import numpy as np


def make_record(qid, query: str, vid: str, windows: np.ndarray | None,
                saliency: np.ndarray | None, *, sort: bool = True,
                decimals: int | None = 4) -> dict:
  """One JSON-lines prediction record.

  Args:
    qid: query id, in the ground truth's JSON type (int for QVHighlights / Charades-STA).
    query, vid: copied for readability of the file.
    windows: [N, 3] (start, end, score) in seconds, or None for HD-only tasks. Rows are stably sorted
      by score (descending, on the unrounded scores) and every value is rounded to `decimals`.
    saliency: [n_clips] per-clip scores, or None; stored through float16 like the official writers.
    sort: sort the rows by score (False: keep the given order, as the official DETR list).
    decimals: round every window value to this many decimals (None: write the values as given).

  Returns:
    {"qid", "query", "vid", "pred_relevant_windows", "pred_saliency_scores"} (the last two if given).
  """
  record = {"qid": qid, "query": query, "vid": vid}
  if windows is not None:
    windows = np.asarray(windows, dtype=np.float64).reshape(-1, 3)
    if sort:
      windows = windows[np.argsort(-windows[:, 2], kind="stable")]
    record["pred_relevant_windows"] = [
        [float(f"{v:.{decimals}f}") if decimals is not None else float(v) for v in row]
        for row in windows]
  if saliency is not None:
    record["pred_saliency_scores"] = np.asarray(saliency, np.float16).astype(float).tolist()
  return record
