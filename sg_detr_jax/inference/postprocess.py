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

Speed: the official convention handles a whole batch with array operations: the element-wise steps
on [B, ...] arrays, and NMS and the fusion (greedy, so sequential within a sample) one candidate of
every sample per step (`_nms_packed`, `_wbf_official_packed`), with the same numpy operations in the
same order and dtypes as the one-sample code they replaced (kept as the reference of
tests/test_postprocess_vectorised.py), so the lists are bit-identical. A batch of 32 (QVHighlights,
285 anchors) takes 5-14 ms on the shared 2-core CPU, 20x less than sample by sample
(benchmarks/postprocess_speed.py). The ranked convention still goes sample by sample (its NMS is
the vectorised one).
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
# Both are greedy and sequential within a sample, so they are vectorised across the samples of a
# batch instead: step t handles the t-th candidate of every sample at once with [B, N] array
# operations, and a sample's steps stop as soon as its result is known. Every floating-point value
# is computed with the same numpy operations, in the same order and dtype, as the one-sample
# reference (tests/test_postprocess_vectorised.py keeps a copy of it), so results are bit-identical.


def _iou_one_to_many(i_st, i_ed, i_len, st, ed, length):
  """IoU of one window per sample (i_*: [R, 1]) with every window of that sample (st, ed, length =
  ed - st: [R, N]): `cross_iou(one, many)` operation for operation (pred = the one window; the
  inputs' dtype; NaN where the union is 0, which never passes a `>` threshold). The caller silences
  numpy's 0/0 warning."""
  inter = np.maximum(0.0, np.minimum(i_ed, ed) - np.maximum(i_st, st))
  return inter / (i_len + length - inter)


def _pack(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(index [B, K], count [B]): per row, the positions where `mask` [B, N] is True, in order,
  first (K = the largest count; positions past a row's count are padding)."""
  count = mask.sum(1)
  order = np.argsort(~mask, axis=1, kind="stable")  # True (0) first, order kept
  return order[:, :int(count.max(initial=0))], count


def _descending(x: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The valid positions of each row of x [B, N] by descending value: np.argsort(-x, kind="stable")
  restricted to `valid` [B, N] (ties in position order, NaN last), packed first.

  float32 x: one sort of unique int64 keys (the float's bits as an ordered integer, then the
  position), several times faster than numpy's stable float sort and the same order; other dtypes:
  that stable sort.

  Returns:
    order [B, K] (row b's first count[b] entries are its valid positions, the rest padding; K = the
    largest count) and count [B].
  """
  n = x.shape[1]
  if x.dtype != _F32 or n >= 2**30:
    order = np.argsort(-x, axis=1, kind="stable")
    index, count = _pack(np.take_along_axis(valid, order, axis=1))
    return np.take_along_axis(order, index, axis=1), count
  v = -x + _F32(0)  # the reference's key; -0.0 becomes 0.0 (equal floats tie)
  bits = v.view(np.int32).astype(np.int64)
  key = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats: magnitude bits flipped
  key = np.where(np.isnan(v), 2**31 - 1, key)  # NaN after every number (+inf is 0x7F800000)
  key = np.where(valid, key, 2**31)  # then the padding
  shift = max(1, (n - 1).bit_length())
  key = ((key + 2**31) << shift) | np.arange(n)  # < 2^62; the position makes keys unique
  key.sort(axis=1)
  count = valid.sum(1)
  return key[:, :int(count.max(initial=0))] & ((1 << shift) - 1), count


def _nms_packed(rows: np.ndarray, valid: np.ndarray, iou_threshold: float, top_k: int | None, *,
                score_col: int = 2, keep_ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """`nms` of every sample of a batch at once.

  Args:
    rows: [B, N, C] candidates (start, end, ...) of each sample, any order, in any dtype (the IoU is
      computed in it).
    valid: [B, N] bool, the real candidates (the others are padding, never kept).
    iou_threshold, top_k, score_col, keep_ties: as `nms`.

  Returns:
    kept [B, K, C] (sample b's kept rows by score in kept[b, :count[b]]; the rest is padding) and
    count [B] int.
  """
  rows = np.asarray(rows)
  valid = np.asarray(valid, bool)
  n_samples = valid.shape[0]
  # Each sample's valid rows by score, as sorting them alone would order them, packed first; the
  # padding past the longest list dropped.
  order, count = _descending(rows[..., score_col], valid)
  n = rows.shape[1]
  srt = rows.reshape(-1, rows.shape[2])[order + n * np.arange(n_samples)[:, None]]  # [B, K, C]
  alive = np.arange(order.shape[1]) < count[:, None]
  score = srt[..., score_col]
  st, ed = srt[..., 0], srt[..., 1]
  length = ed - st
  kept = np.zeros_like(alive)
  count = np.zeros(n_samples, int)
  kth = np.zeros(n_samples, score.dtype)  # score of the top_k-th kept row
  # With keep_ties the reference keeps suppressing to the end and then drops the kept rows scoring
  # below the top_k-th; as rows come by descending score, a sample is done at the first row below
  # it. NaN scores break that ordering argument: then run to the end, as the reference.
  early = bool(top_k) and keep_ties and not np.isnan(score[alive]).any()
  active = alive.any(1)
  every = np.arange(n_samples)
  # Each step keeps the best remaining row of every active sample and suppresses in all samples at
  # once (full [B, N] arrays: cheaper than gathering the active ones at these sizes).
  with np.errstate(invalid="ignore", divide="ignore"):
    while active.any():
      i = np.argmax(alive, axis=1)  # each sample's best remaining row
      best = score[every, i]
      if early:
        active &= ~((count >= top_k) & (best < kth))
      kept[every, i] |= active
      alive[every, i] &= ~active
      count += active
      if top_k:
        at_k = active & (count == top_k)
        kth = np.where(at_k, best, kth)
        if not keep_ties:
          active &= ~at_k
      iou = _iou_one_to_many(st[every, i, None], ed[every, i, None], length[every, i, None], st,
                             ed, length)
      alive &= ~((iou > iou_threshold) & active[:, None])
      active &= alive.any(1)
  index, count = _pack(kept)
  out = np.take_along_axis(srt, index[..., None], axis=1)
  if top_k and keep_ties:  # ties at the top_k-th score stay (a no-op after an early stop)
    for b in np.flatnonzero(count > top_k):
      r = out[b, :count[b]]
      threshold = np.sort(r[:, score_col])[len(r) - top_k]
      r = r[r[:, score_col] >= threshold]
      out[b, :len(r)], count[b] = r, len(r)
  return out, count


def nms(rows: np.ndarray, iou_threshold: float, top_k: int | None, *, score_col: int = 2,
        keep_ties: bool = False) -> np.ndarray:
  """Greedy 1-D NMS, as torchvision's on [x1, 0, x2, 1] boxes, of rows [N, C] (start, end, ...).

  Rows are sorted by `rows[:, score_col]` (descending, stable); a row is suppressed by a kept one at
  IoU > iou_threshold (IoU in the rows' dtype; 0/0 never suppresses). A batch at once:
  `_nms_packed`.

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
  rows = np.asarray(rows)
  kept, count = _nms_packed(rows[None], np.ones((1, len(rows)), bool), iou_threshold, top_k,
                            score_col=score_col, keep_ties=keep_ties)
  return kept[0, :count[0]]


def _wbf_official_packed(lists, valids, weights, span_seconds, iou_threshold: float,
                         skip: float) -> tuple[np.ndarray, np.ndarray]:
  """`weighted_boxes_fusion(..., official=True)` of every sample of a batch at once.

  The official dtypes: lists in float32, spans normalised and compared with skip in float32,
  reversed spans swapped, clipped to [0, 1] as Python's min/max (NaN and -0.0 kept), the first
  list's weighted confidence w * conf in float64 and the others' in float32 (torch tensors there).
  Entries sorted by that confidence (ties: later entry first). Clustering: an entry joins the fused
  box of highest IoU (float64) if IoU > iou_threshold, else starts one. A fused box is accumulated
  member by member in float32, box = f32(box + w_conf * span), and divided by the float64 running
  sum of its members' w_conf (rounded to float32); a one-member box is its entry. Its confidence:
  a single member's w_conf, or f32(mean of the members' w_conf) (numpy's mean, pairwise summation
  included). Score (conf * min(n_lists, members)) / sum(weights); clusters sorted by it (ties:
  later cluster first).

  Args:
    lists: per model, [B, N_k, 3] (start, end, conf) seconds, padded.
    valids: per model, [B, N_k] bool, the real rows.
    weights: one weight per model.
    span_seconds: the span normaliser, seconds, scalar or [B].
    iou_threshold: an entry joins a fused box at IoU > this.
    skip: entries with conf < skip (float32) are dropped, as are zero-length ones.

  Returns:
    fused [B, M, 3] float64 (start s, end s, score) with sample b's list, by score, in
    fused[b, :count[b]] (the rest is padding), and count [B] int.
  """
  weights = np.asarray(weights, _F64)
  n_samples = np.asarray(valids[0]).shape[0]
  span = np.broadcast_to(np.asarray(span_seconds, _F64), (n_samples,))
  x1, x2, conf, ok = [], [], [], []
  with np.errstate(invalid="ignore"):
    for k, (windows, valid) in enumerate(zip(lists, valids)):
      windows = np.asarray(windows, _F32)
      x = windows[..., :2] / span.astype(_F32)[:, None, None]
      s = windows[..., 2]
      keep = np.asarray(valid, bool) & (s >= _F32(skip))
      a, b = x[..., 0].astype(_F64), x[..., 1].astype(_F64)
      swap = b < a
      a, b = np.where(swap, b, a), np.where(swap, a, b)
      # min(max(v, 0.0), 1.0) as Python evaluates it (np.maximum would turn -0.0 into 0.0)
      a, b = (np.where(1.0 < v, 1.0, v) for v in (np.where(0.0 > v, 0.0, v) for v in (a, b)))
      x1.append(a)
      x2.append(b)
      conf.append(s.astype(_F64) * weights[k] if k == 0 else (s * _F32(weights[k])).astype(_F64))
      ok.append(keep & (b > a))
  x1, x2, conf, ok = (np.concatenate(v, axis=1) for v in (x1, x2, conf, ok))
  # Entries by descending conf, later entry first on ties (a reversed stable ascending sort), the
  # valid ones packed at the front: step t of the clustering takes entry t of every sample.
  order = np.argsort(conf, axis=1, kind="stable")[:, ::-1]
  index, n_entries = _pack(np.take_along_axis(ok, order, axis=1))
  order = np.take_along_axis(order, index, axis=1)
  ex1, ex2, ec = (np.take_along_axis(v, order, axis=1) for v in (x1, x2, conf))
  n_steps = order.shape[1]
  ex = np.stack([ex1, ex2], axis=-1)  # [B, E, 2]
  elen = ex2 - ex1
  # Fused boxes, one slot per entry, in flat [B * E] arrays indexed by b * E + slot (one index
  # array per update: cheaper than 2-D fancy indexing): span (float64 of float32 values; a lone
  # entry's own) and its length, float32 accumulators, float64 member-conf sums, member counts.
  size = n_samples * n_steps
  fx1, fx2, flen, total = (np.zeros(size, _F64) for _ in range(4))
  acc = np.zeros((size, 2), _F32)
  members = np.zeros(size, int)
  cluster = np.full((n_samples, n_steps), -1)  # the slot each entry went to
  n_fused = np.zeros(n_samples, int)
  base = np.arange(n_samples) * n_steps
  slots = np.arange(n_steps)
  fx1_2d, fx2_2d, flen_2d = (v.reshape(n_samples, n_steps) for v in (fx1, fx2, flen))  # views
  with np.errstate(invalid="ignore", divide="ignore"):
    for t in range(n_steps):
      r = np.flatnonzero(n_entries > t)  # samples with a t-th entry
      m = int(n_fused.max())  # slots in use anywhere
      if m:
        iou = _iou_one_to_many(ex1[r, t, None], ex2[r, t, None], elen[r, t, None],
                               fx1_2d[r, :m], fx2_2d[r, :m], flen_2d[r, :m])
        iou = np.where(slots[:m] < n_fused[r, None], iou, -1.0)  # empty slots never win
        j = np.argmax(iou, axis=1)  # the first best, as the reference (NaN included)
        join = iou[np.arange(len(r)), j] > iou_threshold
        slot = np.where(join, j, n_fused[r])
      else:
        join, slot = np.zeros(len(r), bool), n_fused[r]
      # Join or start a box: accumulate the member in float32 (a new slot's accumulators are 0,
      # as the reference's first member added to zeros) and its conf in float64.
      lin = base[r] + slot
      c = ec[r, t]
      a = (acc[lin].astype(_F64) + c[:, None] * ex[r, t]).astype(_F32)
      acc[lin] = a
      tot = total[lin] + c
      total[lin] = tot
      box = np.where(join[:, None], (a.astype(_F64) / tot[:, None]).astype(_F32), ex[r, t])
      fx1[lin], fx2[lin] = box[:, 0], box[:, 1]
      flen[lin] = box[:, 1] - box[:, 0]
      members[lin] += 1
      cluster[r, t] = slot
      n_fused[r] += ~join
  # A box's conf: a lone member's own, else float32 of numpy's mean of its members' confs in
  # joining order (np.mean sums pairwise from 8 members on, unlike a running sum). Boxes grouped by
  # size, each group's means taken row-wise (equal to the one-box np.mean, bit for bit).
  fconf = np.zeros(size, _F64)
  b_idx, t_idx = np.nonzero(cluster >= 0)  # by sample, then joining order
  if len(b_idx):
    box = base[b_idx] + cluster[b_idx, t_idx]
    order = np.argsort(box, kind="stable")  # grouped by box, joining order kept
    box, conf_e = box[order], ec[b_idx, t_idx][order]
    first = np.flatnonzero(np.r_[True, box[1:] != box[:-1]])
    n_members = np.diff(np.r_[first, len(box)])
    for n in np.unique(n_members):
      f = first[n_members == n]
      vals = conf_e[f[:, None] + np.arange(n)]
      fconf[box[f]] = vals[:, 0] if n == 1 else vals.mean(axis=1).astype(_F32)
  score = fconf * np.minimum(len(lists), members).astype(_F64) / weights.sum()
  score = score.reshape(n_samples, n_steps)
  order = np.argsort(score, axis=1, kind="stable")[:, ::-1]
  index, n_fused = _pack(np.take_along_axis(slots < n_fused[:, None], order, axis=1))
  order = np.take_along_axis(order, index, axis=1)
  take = lambda v: np.take_along_axis(v, order, axis=1)  # noqa: E731
  return np.stack([take(fx1_2d) * span[:, None], take(fx2_2d) * span[:, None], take(score)],
                  axis=-1), n_fused


def _fuse(members: np.ndarray) -> tuple[float, float, float]:
  """One fused box of its members [n, 3] (weighted conf, x1, x2), ranked convention: the mean
  weighted conf and the conf-weighted mean span, float64."""
  box = (members[:, 1:] * members[:, :1]).sum(0) / members[:, 0].sum()
  return members[:, 0].mean(), box[0], box[1]


def weighted_boxes_fusion(lists, weights, span_seconds: float, iou_threshold: float, skip: float,
                          *, official: bool = False) -> np.ndarray:
  """1-D weighted boxes fusion (ZFTurbo, conf_type "avg") of several window lists.

  Spans are normalised by `span_seconds` and clipped to [0, 1]; entries with confidence < skip or
  zero length are dropped; each weighs w * conf. Greedy clustering, best entry first, against the
  fused boxes at IoU > iou_threshold; a fused box is the (w * conf)-weighted mean of its members and
  its score the members' mean w * conf, rescaled by min(n_lists, |cluster|) / sum(weights).

  official=True follows the official code's dtypes so the result matches it bit for bit (details:
  `_wbf_official_packed`, which fuses a whole batch at once): lists are float32, spans normalised
  and compared with skip in float32, reversed spans swapped, the first list's weighted confidence
  in float64 and the others' in float32 (torch tensors there), fused boxes accumulated in float32,
  the rescale as (score * count) / sum(weights), ties in either sort broken later-entry-first.
  Otherwise (ranked) everything is float64 and ties keep the entry order.

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
  if official:
    lists = [np.asarray(w, _F32).reshape(1, -1, 3) for w in lists]
    fused, count = _wbf_official_packed(lists, [np.ones(w.shape[:2], bool) for w in lists],
                                        weights, span_seconds, iou_threshold, skip)
    return fused[0, :count[0]]
  weights = np.asarray(weights, _F64)
  entries = []  # (weighted conf, x1, x2)
  for windows, w in zip(lists, weights):
    windows = np.asarray(windows, _F64).reshape(-1, 3)
    for (x1, x2), s in zip(windows[:, :2] / _F64(span_seconds), windows[:, 2]):
      if not s >= _F64(skip):
        continue
      x1, x2 = min(max(float(x1), 0.0), 1.0), min(max(float(x2), 0.0), 1.0)
      if not x2 > x1:
        continue
      entries.append((float(s) * float(w), x1, x2))
  if not entries:
    return np.zeros((0, 3))
  entries = np.asarray(entries, _F64)
  entries = entries[np.argsort(-entries[:, 0], kind="stable")]
  members: list[list[np.ndarray]] = []
  fused = np.zeros((0, 3))  # (conf, x1, x2)
  for e in entries:
    if len(fused):
      ious = cross_iou(e[None, 1:], fused[:, 1:])[0]
      j = int(np.argmax(ious))
      if ious[j] > iou_threshold:
        members[j].append(e)
        fused[j] = _fuse(np.asarray(members[j]))
        continue
    members.append([e])
    fused = np.vstack([fused, e])
  counts = np.array([min(len(lists), len(m)) for m in members], _F64)
  score = fused[:, 0] * (counts / weights.sum())
  order = np.argsort(-score, kind="stable")
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
  """The DETR rows after the official clean-up and rescoring, float64; order kept (unless DETR
  NMS). raw: [R, Q, 4] (`_official_detr_raw`); returns one [Q', 3] per row."""
  p = _round_score(raw[..., 2], pp.score_decimals)
  u = _round_score(raw[..., 3], pp.score_decimals)
  rows = np.concatenate([official_clean(raw[..., :2], pp), p[..., None], u[..., None],
                         np.sqrt(p * u)[..., None]], axis=-1)
  cols = [0, 1, _SCORE_COLUMN[pp.detr_score]]
  if pp.detr_nms_iou is None:
    return list(rows[..., cols].astype(_F64))
  kept, count = _nms_packed(rows, np.ones(rows.shape[:2], bool), pp.detr_nms_iou, None,
                            score_col=_SCORE_COLUMN[pp.detr_nms_score])
  kept = kept[..., cols].astype(_F64)
  return [k[:n] for k, n in zip(kept, count)]


def _official_final(rows: np.ndarray, count: np.ndarray, pp) -> list[np.ndarray]:
  """Clean-up of packed ATSS or fused lists (rows [R, N, 3], row r's list in rows[r, :count[r]])
  in their own dtype, score rounded; an empty list -> [[0, 0, 0]] (the official `_fix_output`).
  Element-wise, so the whole padded batch is cleaned at once."""
  rows = np.concatenate([official_clean(rows[..., :2], pp),
                         _round_score(rows[..., 2:3], pp.score_decimals)], axis=-1)
  return [r[:n] if n else np.zeros((1, 3)) for r, n in zip(rows, count)]


def _official_batch(out: Predictions, rows: np.ndarray, span_seconds: np.ndarray, pp,
                    with_raw: bool) -> list[dict[str, np.ndarray]]:
  """The official lists of samples `rows` (see the module docstring), the whole batch at once:
  element-wise steps on [R, ...] arrays, NMS and fusion vectorised across samples."""
  detr_raw = _official_detr_raw(out, rows, span_seconds)
  results = [{"detr": d} for d in _official_detr_final(detr_raw, pp)]
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
  cand = np.concatenate([boxes, score[..., None]], axis=-1)  # [R, A, 3], anchor order
  # The anchor grid: with model.atss_anchor_grid = "batch" (official) `anchor_mask` marks every
  # anchor of the batch's padded grid, past a sample's own length too; rows of the static padding
  # beyond that grid do not exist in the official batch.
  grid = np.asarray(out.anchor_mask, bool)[rows] if out.anchor_mask is not None else score > -1

  def atss_lists(pre, iou, top_k):  # -> packed [R, K, 3] float32, count [R]
    return _nms_packed(cand, grid & (score > _F32(pre)), iou, top_k, keep_ties=True)

  comb, n_comb = atss_lists(pp.atss_pre_threshold, pp.atss_nms_iou, pp.atss_top_k)
  # The DETR list with its fusion confidence (float32), then the official fusion.
  p, u = detr_raw[..., 2], detr_raw[..., 3]
  conf = {"probs": p, "iou": u, "combo": np.sqrt(p * u)}[pp.wbf_score]
  detr_list = np.concatenate([detr_raw[..., :2], conf[..., None]], axis=-1)
  fused, n_fused = _wbf_official_packed(
      [detr_list, comb], [np.ones(detr_list.shape[:2], bool), _counted(comb, n_comb)],
      pp.wbf_weights, pp.wbf_span_seconds, pp.wbf_iou, pp.wbf_skip)
  for r, f in zip(results, _official_final(fused, n_fused, pp)):
    r["fused"] = f
  if with_raw:
    aux, n_aux = atss_lists(pp.aux_pre_threshold, pp.aux_nms_iou, pp.aux_top_k)
    for k, (r, a) in enumerate(zip(results, _official_final(aux, n_aux, pp))):
      r.update(atss_raw=aux[k, :n_aux[k]], atss_comb_raw=comb[k, :n_comb[k]],
               wbf_raw=fused[k, :n_fused[k]], atss=a.astype(_F64))
  return results


def _counted(packed: np.ndarray, count: np.ndarray) -> np.ndarray:
  """[R, K] bool: the first count[r] rows of each packed [R, K, ...] list."""
  return np.arange(packed.shape[1]) < np.asarray(count)[:, None]


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
  sal = np.asarray(sal, _F32)[rows]  # [R, L], cast once for the batch (element-wise)
  if official:
    sal = sal.astype(np.float16).astype(_F32)
  return [s[:n] for s, n in zip(sal, counts)]
