"""Post-processing of the model outputs into scored windows (architecture.md §5), host numpy.

Two conventions, `config.postprocess.convention`; every constant is a field of `config.postprocess`
(configs/base.py, per-dataset overrides in configs/<dataset>.py):

official (default): the official SG-DETR post-processor, lists, values and order included.
  DETR list: the final-layer spans in seconds (x the feature-length duration `span_seconds`,
    clamped to [0, span_seconds]), rows ordered by the class probability p. The window clean-up
    (below) is applied and each row's score is replaced by `detr_score` computed from the rounded
    p and IoU-head u (default sqrt(round(p) * round(u))); the rows are NOT re-sorted by that score.
  ATSS lists: every anchor of the batch's padded grid (`anchor_mask` of the model's "batch" anchor
    grid: anchors past a sample's own valid length included) with sqrt(p_cls * p_ctr) above a
    threshold, decoded x `atss_seconds_per_unit`, clamped to [0, span_seconds] (zero-length windows
    stay), greedy NMS, top-k (ties at the k-th score are kept). Two such lists: the "-AUX" one
    (`aux_*`) and the one the fusion uses (`atss_*`).
  Fused list: 1-D weighted boxes fusion (ZFTurbo, conf "avg") of the DETR list (confidence
    `wbf_score`) and the fusion's ATSS list, spans normalised by the constant `wbf_span_seconds`;
    zero-length entries are skipped; rows sorted by fused score; then the window clean-up with the
    score rounded. An empty fused list becomes one [0, 0, 0] row.
  Window clean-up: clamp to the constant [clamp_min, clamp_max], round to multiples of
    `round_seconds`, move windows shorter than `min_window` (longer than `max_window`) to that
    length about their centre; no clamp afterwards.
  Saliency: the global saliency of every row the mask marks valid, cast through float16.
  Float32 where the official code computes in float32 (DETR, ATSS, the clean-up of both), float64
  for the fused list, so the rounded values match bit for bit.

ranked: confidence-sorted lists (paper eq. 10). DETR rows scored by sqrt(p * u) (unrounded) and
  sorted by it; ATSS candidates masked by `anchor_mask` with zero-length windows dropped; windows
  clamped to the annotated duration, rounded to the dataset's clip length, widened to one clip and
  clamped again; WBF spans normalised by the sample's `span_seconds`; an empty fused list falls
  back to the DETR list; saliency of the real clips, float32.

All returned windows are [N, 3] float64 (start, end, score) in seconds.
"""

from __future__ import annotations

import numpy as np

from sg_detr_jax.evaluation.moment_retrieval import cross_iou
from sg_detr_jax.models import atss as atss_ops
from sg_detr_jax.models.outputs import Predictions

CONVENTIONS = ("official", "ranked")
_F32 = np.float32
_F64 = np.float64


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _sigmoid32(x) -> np.ndarray:
  """float32 sigmoid, computed in float64 and rounded once."""
  return _sigmoid(x).astype(_F32)


def _convention(pp) -> str:
  if "convention" not in pp:
    raise KeyError("config.postprocess.convention is missing (a config written before the official "
                   "post-processing convention existed): add the postprocess fields of "
                   "configs/base.py to it")
  if pp.convention not in CONVENTIONS:
    raise ValueError(f"postprocess.convention must be one of {CONVENTIONS}, not {pp.convention!r}")
  return pp.convention


# ---- both conventions: NMS and weighted boxes fusion ---------------------------------------------
def nms(rows: np.ndarray, iou_threshold: float, top_k: int | None, *, score_col: int = 2,
        keep_ties: bool = False) -> np.ndarray:
  """Greedy 1-D NMS, as torchvision's on [x1, 0, x2, 1] boxes, of rows [N, C] (start, end, ...).

  Rows are sorted by `rows[:, score_col]` (descending, stable); a row is suppressed by a kept one at
  IoU > iou_threshold (IoU in the rows' dtype; 0/0 never suppresses).

  Args:
    rows: [N, C] in any order.
    iou_threshold: suppression IoU.
    top_k: at most this many rows (None or 0: no limit). With keep_ties (the official
      fpn_post_nms_top_n), every kept row scoring at least the top_k-th best stays (ties included).
    score_col: the score column.
    keep_ties: see top_k.

  Returns:
    the kept rows, by score.
  """
  rows = rows[np.argsort(-rows[:, score_col], kind="stable")]
  keep = []
  alive = np.ones(len(rows), bool)
  for i in range(len(rows)):
    if not alive[i]:
      continue
    keep.append(i)
    if top_k and not keep_ties and len(keep) == top_k:
      break
    alive[i + 1:] &= ~(cross_iou(rows[i:i + 1, :2], rows[i + 1:, :2])[0] > iou_threshold)
  rows = rows[keep]
  if top_k and keep_ties and len(rows) > top_k:
    threshold = np.sort(rows[:, score_col])[len(rows) - top_k]
    rows = rows[rows[:, score_col] >= threshold]
  return rows


def _descending(x: np.ndarray, later_first: bool) -> np.ndarray:
  """Indices sorting x in descending order; ties keep their order, or with later_first (a reversed
  stable ascending sort, as the official code) the later one comes first."""
  return np.argsort(x, kind="stable")[::-1] if later_first else np.argsort(-x, kind="stable")


def _fuse(members: np.ndarray, official: bool) -> tuple[float, float, float]:
  """One fused box of its members [n, 3] (weighted conf, x1, x2): the mean weighted conf and the
  conf-weighted mean span. official: the box accumulated member by member in float32 (a torch
  tensor there), conf and box rounded to float32."""
  if not official:
    box = (members[:, 1:] * members[:, :1]).sum(0) / members[:, 0].sum()
    return members[:, 0].mean(), box[0], box[1]
  box = np.zeros(2, _F32)
  total = _F64(0)
  for m in members:
    box = (box.astype(_F64) + m[0] * m[1:]).astype(_F32)
    total += m[0]
  box = (box.astype(_F64) / total).astype(_F32)
  return _F32(members[:, 0].mean()), box[0], box[1]


def weighted_boxes_fusion(lists, weights, span_seconds: float, iou_threshold: float, skip: float,
                          *, official: bool = False) -> np.ndarray:
  """1-D weighted boxes fusion (ZFTurbo, conf_type "avg") of several window lists.

  Spans are normalised by `span_seconds` and clipped to [0, 1]; entries with confidence < skip or
  zero length are dropped; each weighs w * conf. Greedy clustering, best entry first, against the
  fused boxes at IoU > iou_threshold; a fused box is the (w * conf)-weighted mean of its members and
  its score the members' mean w * conf, rescaled by min(n_lists, |cluster|) / sum(weights).

  official=True follows the official code's dtypes so the result matches it bit for bit: lists are
  float32, spans normalised and compared with skip in float32, reversed spans swapped, the first
  list's weighted confidence in float64 and the others' in float32 (torch tensors there), fused
  boxes as `_fuse`, the rescale as (score * count) / sum(weights), ties in either sort broken
  later-entry-first. Otherwise (ranked) everything is float64 and ties keep the entry order.

  Args:
    lists: [N_i, 3] (start, end, conf) in seconds, one list per model.
    weights: one weight per list.
    span_seconds: the span normaliser, seconds.
    iou_threshold: an entry joins a fused box at IoU > this.
    skip: confidence threshold.
    official: see above.

  Returns:
    [M, 3] float64 (start, end, score) in seconds, sorted by score.
  """
  dtype = _F32 if official else _F64
  weights = np.asarray(weights, _F64)
  entries = []  # (weighted conf, x1, x2)
  for k, (windows, w) in enumerate(zip(lists, weights)):
    windows = np.asarray(windows, dtype).reshape(-1, 3)
    for (x1, x2), s in zip(windows[:, :2] / dtype(span_seconds), windows[:, 2]):
      if not s >= dtype(skip):
        continue
      x1, x2 = float(x1), float(x2)
      if official and x2 < x1:
        x1, x2 = x2, x1
      x1, x2 = min(max(x1, 0.0), 1.0), min(max(x2, 0.0), 1.0)
      if not x2 > x1:
        continue
      entries.append((float(s * _F32(w)) if official and k else float(s) * float(w), x1, x2))
  if not entries:
    return np.zeros((0, 3))
  entries = np.asarray(entries, _F64)
  entries = entries[_descending(entries[:, 0], official)]
  members: list[list[np.ndarray]] = []
  fused = np.zeros((0, 3))  # (conf, x1, x2)
  for e in entries:
    if len(fused):
      ious = cross_iou(e[None, 1:], fused[:, 1:])[0]
      j = int(np.argmax(ious))
      if ious[j] > iou_threshold:
        members[j].append(e)
        fused[j] = _fuse(np.asarray(members[j]), official)
        continue
    members.append([e])
    fused = np.vstack([fused, e])
  counts = np.array([min(len(lists), len(m)) for m in members], _F64)
  if official:
    score = fused[:, 0] * counts / weights.sum()
  else:
    score = fused[:, 0] * (counts / weights.sum())
  order = _descending(score, official)
  return np.stack([fused[order, 1] * float(span_seconds), fused[order, 2] * float(span_seconds),
                   score[order]], axis=1)


# ---- ranked convention (paper eq. 10) ----------------------------------------------------------
def detr_windows(spans, logits, iou_logits, span_seconds, duration) -> np.ndarray:
  """spans [Q, 2] (c, w) normalised by `span_seconds` -> [Q, 3] sorted by confidence."""
  spans = np.asarray(spans, np.float64)
  score = _sigmoid(logits)
  if iou_logits is not None:
    score = np.sqrt(score * _sigmoid(iou_logits))
  st = np.clip((spans[:, 0] - spans[:, 1] / 2) * span_seconds, 0, duration)
  ed = np.clip((spans[:, 0] + spans[:, 1] / 2) * span_seconds, 0, duration)
  out = np.stack([st, ed, score], axis=1)
  return out[np.argsort(-score, kind="stable")]


def atss_windows(logits, deltas, ctr, anchors, anchor_mask, clip_len, duration, pp) -> np.ndarray:
  """Dense ATSS predictions of one sample -> NMS-ed top-k [K, 3] in seconds (ranked convention)."""
  score = np.sqrt(_sigmoid(logits) * _sigmoid(ctr))
  keep = np.asarray(anchor_mask, bool) & (score > pp.atss_pre_threshold)
  if not keep.any():
    return np.zeros((0, 3))
  boxes = np.asarray(atss_ops.decode(np.asarray(deltas)[keep], np.asarray(anchors)[keep]),
                     np.float64) * clip_len
  boxes = np.clip(boxes, 0, duration)
  windows = np.concatenate([boxes, score[keep][:, None]], axis=1)
  windows = windows[windows[:, 1] > windows[:, 0]]
  return nms(windows, pp.atss_nms_iou, pp.atss_top_k)


def clean_windows(windows: np.ndarray, clip_len: float, duration: float) -> np.ndarray:
  """Clamp to [0, duration], round to multiples of clip_len, widen windows shorter than a clip
  (ranked convention)."""
  w = np.array(windows, np.float64).reshape(-1, 3)
  w[:, :2] = np.clip(w[:, :2], 0, duration)
  w[:, :2] = np.round(w[:, :2] / clip_len) * clip_len  # numpy rounds half to even, as torch
  short = (w[:, 1] - w[:, 0]) < clip_len
  center = (w[short, 0] + w[short, 1]) / 2
  w[short, 0], w[short, 1] = center - clip_len / 2, center + clip_len / 2
  w[:, :2] = np.clip(w[:, :2], 0, duration)
  return w


def _ranked_sample(out: Predictions, i: int, span_seconds: float, clip_len: float, duration: float,
                   pp) -> dict[str, np.ndarray]:
  detr = detr_windows(out.pred_spans[-1, i], out.pred_logits[-1, i],
                      out.pred_iou[-1, i] if out.pred_iou is not None else None, span_seconds,
                      duration)
  result = {"detr": clean_windows(detr, clip_len, duration)}
  if out.atss_logits is not None:
    a = atss_windows(out.atss_logits[i], out.atss_deltas[i], out.atss_ctr[i],
                     out.anchors, out.anchor_mask[i], clip_len, duration, pp)
    fused = weighted_boxes_fusion([detr, a], pp.wbf_weights, span_seconds, pp.wbf_iou, pp.wbf_skip)
    # An untrained model may have nothing above the fusion's skip threshold: fall back to DETR.
    result["fused"] = clean_windows(fused, clip_len, duration) if len(fused) else result["detr"]
  else:
    result["fused"] = result["detr"]
  return result


# ---- official convention -----------------------------------------------------------------------
_SCORE_COLUMN = {"probs": 2, "iou": 3, "combo": 4}  # columns of [start, end, p, u, combo]


def _round_score(x: np.ndarray, decimals: int) -> np.ndarray:
  """round(x * 10^d) / 10^d in x's dtype, half to even (torch.round)."""
  scale = x.dtype.type(10 ** decimals)
  return np.round(x * scale) / scale


def official_clean(windows: np.ndarray, pp) -> np.ndarray:
  """The official window clean-up of [..., 2] (start, end) in the array's own dtype: clamp to
  [clamp_min, clamp_max], round to multiples of round_seconds, then windows shorter than
  min_window / longer than max_window (lengths after rounding) are moved to that length."""
  w = np.asarray(windows)
  t = w.dtype.type
  w = np.minimum(np.maximum(w, t(pp.clamp_min)), t(pp.clamp_max))
  w = np.round(w / t(pp.round_seconds)) * t(pp.round_seconds)
  length = w[..., 1] - w[..., 0]
  for rows, new_len in ((length < pp.min_window, pp.min_window),
                        (length > pp.max_window, pp.max_window)):
    if not rows.any():
      continue
    st, ed = w[..., 0][rows], w[..., 1][rows]
    if pp.move_window == "center":
      center = (ed + st) / t(2)
      st, ed = center - t(new_len / 2), center + t(new_len / 2)
    elif pp.move_window == "left":  # start kept
      ed = st + t(new_len)
    elif pp.move_window == "right":  # end kept
      st = ed - t(new_len)
    else:
      raise ValueError(f"postprocess.move_window must be center | left | right, not "
                       f"{pp.move_window!r}")
    w[..., 0][rows], w[..., 1][rows] = st, ed
  return w


def _decode32(deltas: np.ndarray, anchors: np.ndarray) -> np.ndarray:
  """`atss.decode` in float32 numpy: deltas [..., A, 2], anchors [A, 2] -> [..., A, 2]."""
  d, a = np.asarray(deltas, _F32), np.asarray(anchors, _F32)
  aw = a[:, 1] - a[:, 0] + _F32(1)
  ac = (a[:, 0] + a[:, 1]) / _F32(2)
  pc = d[..., 0] / _F32(atss_ops.BOX_WEIGHTS[0]) * aw + ac
  pw = np.exp(np.minimum(d[..., 1] / _F32(atss_ops.BOX_WEIGHTS[1]), _F32(atss_ops.MAX_DW))) * aw
  half = _F32(0.5) * (pw - _F32(1))
  return np.stack([pc - half, pc + half], axis=-1)


def _official_detr_raw(out: Predictions, rows: np.ndarray, span_seconds: np.ndarray) -> np.ndarray:
  """[R, Q, 4] float32 (start, end, p, u), rows of each sample ordered by p (descending)."""
  spans = np.asarray(out.pred_spans[-1], _F32)[rows]
  p = _sigmoid32(np.asarray(out.pred_logits[-1])[rows])
  # Without an IoU head (ablation rows), the IoU score is the class probability.
  u = _sigmoid32(np.asarray(out.pred_iou[-1])[rows]) if out.pred_iou is not None else p
  dur = np.asarray(span_seconds, _F32)[:, None]
  half = _F32(0.5) * spans[..., 1]
  st = np.minimum(np.maximum((spans[..., 0] - half) * dur, _F32(0)), dur)
  ed = np.minimum(np.maximum((spans[..., 0] + half) * dur, _F32(0)), dur)
  raw = np.stack([st, ed, p, u], axis=-1)
  order = np.argsort(-p, axis=1, kind="stable")
  return np.take_along_axis(raw, order[..., None], axis=1)


def _official_detr_final(raw: np.ndarray, pp) -> list[np.ndarray]:
  """The DETR rows after the official clean-up and rescoring; order kept (unless DETR NMS)."""
  p = _round_score(raw[..., 2], pp.score_decimals)
  u = _round_score(raw[..., 3], pp.score_decimals)
  rows = np.concatenate([official_clean(raw[..., :2], pp), p[..., None], u[..., None],
                         np.sqrt(p * u)[..., None]], axis=-1)
  col = _SCORE_COLUMN[pp.detr_score]
  result = []
  for r in rows:
    if pp.detr_nms_iou is not None:
      r = nms(r, pp.detr_nms_iou, None, score_col=_SCORE_COLUMN[pp.detr_nms_score])
    result.append(r[:, [0, 1, col]])
  return result


def _official_final(rows: np.ndarray, pp) -> np.ndarray:
  """Clean-up of an ATSS or fused list [N, 3] in its own dtype, score rounded; empty -> [0, 0, 0]
  (the official `_fix_output`)."""
  if not len(rows):
    return np.zeros((1, 3))
  return np.concatenate([official_clean(rows[:, :2], pp),
                         _round_score(rows[:, 2:3], pp.score_decimals)], axis=1)


def _official_batch(out: Predictions, rows: np.ndarray, span_seconds: np.ndarray, pp,
                    with_raw: bool) -> list[dict[str, np.ndarray]]:
  detr_raw = _official_detr_raw(out, rows, span_seconds)
  detr = _official_detr_final(detr_raw, pp)
  results = [{"detr": d.astype(_F64)} for d in detr]
  if with_raw:
    for r, d in zip(results, detr_raw):
      r["detr_raw"] = d
  if out.atss_logits is None:
    for r in results:
      r["fused"] = r["detr"]
    return results
  score = np.sqrt(_sigmoid32(np.asarray(out.atss_logits)[rows])
                  * _sigmoid32(np.asarray(out.atss_ctr)[rows]))
  boxes = _decode32(np.asarray(out.atss_deltas)[rows], out.anchors)
  boxes = boxes * _F32(pp.atss_seconds_per_unit)
  dur = np.asarray(span_seconds, _F32)[:, None, None]
  boxes = np.minimum(np.maximum(boxes, _F32(0)), dur)
  cand = np.concatenate([boxes, score[..., None]], axis=-1)  # [R, A, 3]
  # The anchor grid: with model.atss_anchor_grid = "batch" (official) `anchor_mask` marks every
  # anchor of the batch's padded grid, past a sample's own length too; rows of the static padding
  # beyond that grid do not exist in the official batch.
  grid = np.asarray(out.anchor_mask, bool)[rows] if out.anchor_mask is not None else score > -1

  def atss_list(k, pre, iou, top_k):  # candidates in anchor order (levels concatenated)
    return nms(cand[k][grid[k] & (score[k] > _F32(pre))], iou, top_k, keep_ties=True)

  for k, r in enumerate(results):
    comb = atss_list(k, pp.atss_pre_threshold, pp.atss_nms_iou, pp.atss_top_k)
    # The DETR list with its fusion confidence (float32), then the official fusion.
    p, u = detr_raw[k, :, 2], detr_raw[k, :, 3]
    conf = {"probs": p, "iou": u, "combo": np.sqrt(p * u)}[pp.wbf_score]
    detr_list = np.concatenate([detr_raw[k, :, :2], conf[:, None]], axis=1)
    fused = weighted_boxes_fusion([detr_list, comb], pp.wbf_weights, pp.wbf_span_seconds,
                                  pp.wbf_iou, pp.wbf_skip, official=True)
    r["fused"] = _official_final(fused, pp)
    if with_raw:
      aux = atss_list(k, pp.aux_pre_threshold, pp.aux_nms_iou, pp.aux_top_k)
      r.update(atss_raw=aux, atss_comb_raw=comb, wbf_raw=fused,
               atss=_official_final(aux, pp).astype(_F64))
  return results


# ---- entry points --------------------------------------------------------------------------------
def batch_windows(out: Predictions, rows, span_seconds, clip_len, duration, pp,
                  with_raw: bool = False) -> list[dict[str, np.ndarray]]:
  """Both prediction lists of samples `rows` of a batch of host `Predictions`.

  Args:
    out: the model's output dict (numpy), batch-first as documented in models/sg_detr.py.
    rows: sample indices into the batch.
    span_seconds, clip_len, duration: per-row arrays (or scalars) in seconds: the span normaliser
      (valid rows x clip length, the official "duration"), the clip length and the annotated
      duration (the last two are used by the ranked convention only).
    pp: `config.postprocess`.
    with_raw: (official convention) also return the intermediate lists: detr_raw [Q, 4] (start,
      end, p, u), atss_raw / atss_comb_raw [K, 3] (the "-AUX" and the fusion's ATSS lists),
      wbf_raw [M, 3] (before the clean-up) and atss (the cleaned "-AUX" list).

  Returns:
    one {"detr": [Q, 3], "fused": [M, 3], ...} per row, float64 (start s, end s, score).
  """
  rows = np.asarray(rows, int).reshape(-1)
  n = len(rows)
  span_seconds, clip_len, duration = (np.broadcast_to(np.asarray(x, _F64), (n,))
                                      for x in (span_seconds, clip_len, duration))
  if _convention(pp) == "ranked":
    return [_ranked_sample(out, i, float(s), float(c), float(d), pp)
            for i, s, c, d in zip(rows, span_seconds, clip_len, duration)]
  return _official_batch(out, rows, span_seconds, pp, with_raw)


def sample_windows(out: Predictions, i: int, span_seconds: float, clip_len: float, duration: float,
                   pp) -> dict[str, np.ndarray]:
  """Both prediction lists of sample i of a batch of host `Predictions`: {"detr": ..., "fused": ...}."""
  return batch_windows(out, [i], span_seconds, clip_len, duration, pp)[0]


def saliency_scores(out: Predictions, rows, num_real, num_valid, pp) -> list[np.ndarray]:
  """Clip scores (global saliency) of samples `rows`, float32: official, the `num_valid` rows the
  mask marks valid, cast through float16; ranked, the `num_real` clips with features."""
  sal = np.asarray(out.saliency_global)
  rows = np.asarray(rows, int).reshape(-1)
  official = _convention(pp) == "official"
  counts = np.broadcast_to(np.asarray(num_valid if official else num_real, int), rows.shape)
  res = [np.asarray(sal[i, :n], _F32) for i, n in zip(rows, counts)]
  return [s.astype(np.float16).astype(_F32) for s in res] if official else res
