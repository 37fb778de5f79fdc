"""The batch-vectorised post-processing equals a straightforward one-sample-at-a-time reference,
bit for bit (same bytes, dtype and shape), on random inputs built to hit the corner cases: tied
scores and confidences, duplicate and zero-length windows (0/0 IoU), reversed and out-of-range
spans, NaN scores, empty lists, fused clusters of 8+ members (numpy's pairwise mean), -0.0.

The reference below is the per-sample code the vectorised one replaced (sg_detr_jax/inference/
postprocess.py before issue 20): greedy NMS and the official weighted boxes fusion written with
Python loops, the official lists assembled one sample at a time.
"""

import dataclasses

import numpy as np
import pytest

from configs import qvhighlights
from sg_detr_jax.evaluation.moment_retrieval import cross_iou
from sg_detr_jax.inference import postprocess as pp_lib
from sg_detr_jax.models.outputs import Predictions

F32, F64 = np.float32, np.float64


# ---- the reference -------------------------------------------------------------------------------
def nms_ref(rows, iou_threshold, top_k, *, score_col=2, keep_ties=False):
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


def _fuse_ref(members):
  box = np.zeros(2, F32)
  total = F64(0)
  for m in members:
    box = (box.astype(F64) + m[0] * m[1:]).astype(F32)
    total += m[0]
  box = (box.astype(F64) / total).astype(F32)
  return F32(members[:, 0].mean()), box[0], box[1]


def wbf_official_ref(lists, weights, span_seconds, iou_threshold, skip):
  weights = np.asarray(weights, F64)
  entries = []
  for k, (windows, w) in enumerate(zip(lists, weights)):
    windows = np.asarray(windows, F32).reshape(-1, 3)
    for (x1, x2), s in zip(windows[:, :2] / F32(span_seconds), windows[:, 2]):
      if not s >= F32(skip):
        continue
      x1, x2 = float(x1), float(x2)
      if x2 < x1:
        x1, x2 = x2, x1
      x1, x2 = min(max(x1, 0.0), 1.0), min(max(x2, 0.0), 1.0)
      if not x2 > x1:
        continue
      entries.append((float(s * F32(w)) if k else float(s) * float(w), x1, x2))
  if not entries:
    return np.zeros((0, 3))
  entries = np.asarray(entries, F64)
  entries = entries[np.argsort(entries[:, 0], kind="stable")[::-1]]
  members, fused = [], np.zeros((0, 3))
  with np.errstate(invalid="ignore", divide="ignore"):
    for e in entries:
      if len(fused):
        ious = cross_iou(e[None, 1:], fused[:, 1:])[0]
        j = int(np.argmax(ious))
        if ious[j] > iou_threshold:
          members[j].append(e)
          fused[j] = _fuse_ref(np.asarray(members[j]))
          continue
      members.append([e])
      fused = np.vstack([fused, e])
  counts = np.array([min(len(lists), len(m)) for m in members], F64)
  score = fused[:, 0] * counts / weights.sum()
  order = np.argsort(score, kind="stable")[::-1]
  return np.stack([fused[order, 1] * float(span_seconds), fused[order, 2] * float(span_seconds),
                   score[order]], axis=1)


def _final_ref(rows, pp):
  if not len(rows):
    return np.zeros((1, 3))
  return np.concatenate([pp_lib.official_clean(rows[:, :2], pp),
                         pp_lib._round_score(rows[:, 2:3], pp.score_decimals)], axis=1)


def official_ref(out, rows, span_seconds, pp):
  """The official lists (with_raw) of each sample on its own, as the per-sample code built them."""
  rows = np.asarray(rows)
  span_seconds = np.asarray(span_seconds, F64)
  detr_raw = pp_lib._official_detr_raw(out, rows, span_seconds)
  p = pp_lib._round_score(detr_raw[..., 2], pp.score_decimals)
  u = pp_lib._round_score(detr_raw[..., 3], pp.score_decimals)
  detr_rows = np.concatenate([pp_lib.official_clean(detr_raw[..., :2], pp), p[..., None],
                              u[..., None], np.sqrt(p * u)[..., None]], axis=-1)
  col = pp_lib._SCORE_COLUMN[pp.detr_score]
  score = np.sqrt(pp_lib._sigmoid32(np.asarray(out.atss_logits)[rows])
                  * pp_lib._sigmoid32(np.asarray(out.atss_ctr)[rows]))
  boxes = pp_lib._decode32(np.asarray(out.atss_deltas)[rows], out.anchors)
  boxes = boxes * F32(pp.atss_seconds_per_unit)
  boxes = np.minimum(np.maximum(boxes, F32(0)), np.asarray(span_seconds, F32)[:, None, None])
  cand = np.concatenate([boxes, score[..., None]], axis=-1)
  grid = np.asarray(out.anchor_mask, bool)[rows]
  results = []
  for k in range(len(rows)):
    r = detr_rows[k]
    if pp.detr_nms_iou is not None:
      r = nms_ref(r, pp.detr_nms_iou, None, score_col=pp_lib._SCORE_COLUMN[pp.detr_nms_score])
    res = {"detr": r[:, [0, 1, col]].astype(F64), "detr_raw": detr_raw[k]}
    atss = lambda pre, iou, top_k: nms_ref(cand[k][grid[k] & (score[k] > F32(pre))], iou,  # noqa
                                           top_k, keep_ties=True)
    comb = atss(pp.atss_pre_threshold, pp.atss_nms_iou, pp.atss_top_k)
    pk, uk = detr_raw[k, :, 2], detr_raw[k, :, 3]
    conf = {"probs": pk, "iou": uk, "combo": np.sqrt(pk * uk)}[pp.wbf_score]
    detr_list = np.concatenate([detr_raw[k, :, :2], conf[:, None]], axis=1)
    fused = wbf_official_ref([detr_list, comb], pp.wbf_weights, pp.wbf_span_seconds, pp.wbf_iou,
                             pp.wbf_skip)
    aux = atss(pp.aux_pre_threshold, pp.aux_nms_iou, pp.aux_top_k)
    res.update(fused=_final_ref(fused, pp), atss_raw=aux, atss_comb_raw=comb, wbf_raw=fused,
               atss=_final_ref(aux, pp).astype(F64))
    results.append(res)
  return results


# ---- helpers -------------------------------------------------------------------------------------
def assert_bits(got, want, what=""):
  got, want = np.asarray(got), np.asarray(want)
  assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
  assert got.shape == want.shape, (what, got.shape, want.shape)
  assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want).tobytes(), \
      (what, got, want)


def random_windows(rng, n, dtype, *, span=160.0, ties=True, zero_len=True, reversed_=False,
                   nan=False):
  """[n, 3] (start, end, score) with the corner cases switched on."""
  st = rng.uniform(-10, span + 10, n)
  ln = rng.exponential(span / 6, n)
  if zero_len:
    ln[rng.random(n) < 0.15] = 0.0
  if n > 3:  # exact duplicates
    st[1], ln[1] = st[0], ln[0]
  ed = st + ln
  if reversed_:
    flip = rng.random(n) < 0.2
    st, ed = np.where(flip, ed, st), np.where(flip, st, ed)
  score = rng.integers(1, 6, n) / 5 if ties and rng.random() < 0.5 else rng.random(n)
  if nan and n:
    score[rng.integers(n)] = np.nan
  if rng.random() < 0.3:
    st[rng.random(n) < 0.2] = -0.0
  return np.stack([st, ed, score], axis=1).astype(dtype)


# ---- sorting -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, F64])
def test_descending_is_the_stable_argsort_of_the_valid_rows(dtype):
  rng = np.random.default_rng(1)
  special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 3.4e38, -3.4e38,
                      0.5, -0.5, 1.0, -1.0])
  x = np.where(rng.random((40, 50)) < 0.5, rng.choice(special, (40, 50)),
               rng.integers(-3, 4, (40, 50)) / 2).astype(dtype)
  x[0] = np.nan
  valid = rng.random((40, 50)) < 0.7
  valid[1] = False
  order, count = pp_lib._descending(x, valid)
  assert order.shape == (40, count.max())
  for b in range(40):
    want = np.flatnonzero(valid[b])[np.argsort(-x[b][valid[b]], kind="stable")]
    np.testing.assert_array_equal(order[b, :count[b]], want)


# ---- NMS -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(60))
def test_nms_equals_reference(seed):
  rng = np.random.default_rng(seed)
  dtype = (F32, F64)[seed % 2]
  n = int(rng.integers(0, 40))
  rows = random_windows(rng, n, dtype, nan=seed % 7 == 0)
  if seed % 5 == 0:  # extra columns, another score column
    rows = np.concatenate([rows, rng.random((n, 2)).astype(dtype)], axis=1)
  score_col = 3 if seed % 5 == 0 else 2
  for thr in (0.3, 0.5, 0.75):
    for top_k in (None, 0, 1, 3, 10):
      for keep_ties in (False, True):
        got = pp_lib.nms(rows, thr, top_k, score_col=score_col, keep_ties=keep_ties)
        want = nms_ref(rows, thr, top_k, score_col=score_col, keep_ties=keep_ties)
        assert_bits(got, want, (thr, top_k, keep_ties))


@pytest.mark.parametrize("seed", range(20))
def test_nms_packed_equals_reference_per_sample(seed):
  rng = np.random.default_rng(100 + seed)
  b, n = 7, 30
  rows = np.stack([random_windows(rng, n, F32, nan=seed % 5 == 0) for _ in range(b)])
  valid = rng.random((b, n)) < rng.uniform(0, 1, (b, 1))
  valid[0] = False  # an empty sample
  for top_k, keep_ties in ((10, True), (3, True), (4, False), (None, False)):
    kept, count = pp_lib._nms_packed(rows, valid, 0.5, top_k, keep_ties=keep_ties)
    for k in range(b):
      assert_bits(kept[k, :count[k]], nms_ref(rows[k][valid[k]], 0.5, top_k, keep_ties=keep_ties))


def test_nms_keeps_every_row_tied_at_the_kth_score():
  rows = np.array([[0, 1, .9], [2, 3, .5], [4, 5, .5], [6, 7, .5], [8, 9, .4]], F32)
  assert_bits(pp_lib.nms(rows, 0.5, 2, keep_ties=True), rows[:4])
  assert_bits(pp_lib.nms(rows, 0.5, 2), rows[:2])


# ---- weighted boxes fusion -----------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(60))
def test_official_wbf_equals_reference(seed):
  rng = np.random.default_rng(200 + seed)
  span = float(rng.choice([152.0, 100.0, 37.3]))
  lists = [random_windows(rng, int(rng.integers(0, 30)), F32, span=span, reversed_=True)
           for _ in range(int(rng.integers(1, 4)))]
  if seed % 3 == 0 and len(lists[0]) > 12:  # one big cluster: 12 near-identical windows
    lists[0][:12, :2] = [10.0, 50.0] + rng.normal(0, 0.05, (12, 2))
  weights = rng.uniform(0.5, 3, len(lists))
  for thr, skip in ((0.8, 0.1), (0.5, 0.0), (0.2, 0.3)):
    got = pp_lib.weighted_boxes_fusion(lists, weights, span, thr, skip, official=True)
    assert_bits(got, wbf_official_ref(lists, weights, span, thr, skip), (thr, skip))


# Scores whose 12 weighted confidences (list weight MEAN_SENSITIVE_WEIGHTS[0]) have a float32 mean
# that a running sum gets wrong (found by search: np.mean sums 8+ values pairwise).
MEAN_SENSITIVE = np.array([
    0.7499998807907104, 0.7499998211860657, 0.7500000596046448, 0.75, 0.7500001192092896,
    0.7499999403953552, 0.7499999403953552, 0.7500000596046448, 0.7500000596046448,
    0.7499998211860657, 0.7500001192092896, 0.7500001788139343], F32)
MEAN_SENSITIVE_WEIGHTS = (1.333333412806193, 2.5)


def test_official_wbf_large_cluster_uses_numpy_mean():
  """A 12-member box whose confidence, f32(mean of the members' w * conf), depends on numpy's
  pairwise summation (a running sum rounds to the other float32 neighbour): the reference's."""
  s, weights = MEAN_SENSITIVE, MEAN_SENSITIVE_WEIGHTS
  a = np.concatenate([np.tile([[10.0, 50.0]], (12, 1)), s[:, None]], axis=1).astype(F32)
  conf = np.sort(s.astype(F64) * weights[0])[::-1]
  running = F64(0)
  for c in conf:
    running += c
  assert F32(conf.mean()) != F32(running / 12)  # the case tells the two apart
  args = ([a, np.zeros((0, 3))], weights, 152.0, 0.8, 0.1)
  got = pp_lib.weighted_boxes_fusion(*args, official=True)
  assert len(got) == 1
  assert_bits(got, wbf_official_ref(*args))


def test_official_wbf_packed_equals_reference_per_sample():
  rng = np.random.default_rng(7)
  b = 9
  lists = [np.stack([random_windows(rng, 25, F32, span=152.0) for _ in range(b)]),
           np.stack([random_windows(rng, 12, F32, span=152.0) for _ in range(b)])]
  valids = [np.ones((b, 25), bool), np.arange(12) < rng.integers(0, 13, (b, 1))]
  valids[0][2] = False  # a sample with no DETR rows: only ATSS entries
  valids[1][2] = False  # ... and none at all
  lists[0][3:6, :12] = np.concatenate([np.tile([[10.0, 50.0]], (12, 1)), MEAN_SENSITIVE[:, None]],
                                      axis=1)  # several 12-member boxes: means taken row-wise
  weights = MEAN_SENSITIVE_WEIGHTS
  fused, count = pp_lib._wbf_official_packed(lists, valids, weights, 152.0, 0.8, 0.1)
  for k in range(b):
    want = wbf_official_ref([w[k][v[k]] for w, v in zip(lists, valids)], weights, 152.0, 0.8, 0.1)
    assert_bits(fused[k, :count[k]], want, k)
  assert count[2] == 0


# ---- the whole official batch --------------------------------------------------------------------
def random_predictions(rng, b, *, num_clips=76, queries=25, levels=4, peaked=False):
  """Random `Predictions` with ATSS anchors over `levels` FPN levels of `num_clips` clips.
  peaked: logits near the thresholds and quantised (tied scores, lists crossing the cut-offs)."""
  anchors = np.concatenate([
      np.stack([s * np.arange(num_clips // s) + s / 2 - (4 * s - 1) / 2,
                s * np.arange(num_clips // s) + s / 2 + (4 * s - 1) / 2], axis=1)
      for s in (1, 2, 4, 8)[:levels]]).astype(F32)
  a = len(anchors)
  logit = lambda *shape: (np.round(rng.normal(-2, 1.5, shape) * 2) / 2 if peaked  # noqa: E731
                          else rng.normal(0, 2, shape)).astype(F32)
  spans = np.stack([rng.uniform(0, 1, (3, b, queries)), rng.exponential(0.2, (3, b, queries))],
                   axis=-1).astype(F32)
  mask = np.ones((b, a), bool)
  mask[::3, -a // 4:] = False  # anchors beyond some samples' grid
  return Predictions(
      saliency_local=rng.normal(size=(b, num_clips)).astype(F32),
      saliency_global=rng.normal(size=(b, num_clips)).astype(F32),
      pred_logits=logit(3, b, queries), pred_spans=spans, pred_iou=logit(3, b, queries),
      enc_logits=logit(b, queries), enc_iou=logit(b, queries), enc_spans=spans[0],
      atss_logits=logit(b, a), atss_deltas=rng.normal(0, 1, (b, a, 2)).astype(F32),
      atss_ctr=logit(b, a), anchors=anchors, anchor_mask=mask)


def _pp(**overrides):
  pp = qvhighlights.get_config().postprocess
  for k, v in overrides.items():
    pp[k] = v
  return pp


@pytest.mark.parametrize("seed,peaked,overrides", [
    (0, False, {}), (1, True, {}), (2, True, {"wbf_iou": 0.3, "atss_nms_iou": 0.3}),
    (3, False, {"detr_nms_iou": 0.5, "detr_score": "probs"}),
    (4, True, {"wbf_score": "iou", "move_window": "left"}),
    (5, False, {"atss_pre_threshold": 0.999, "wbf_skip": 0.99}),  # empty lists
])
def test_official_batch_equals_reference(seed, peaked, overrides):
  rng = np.random.default_rng(300 + seed)
  b = 11
  out = random_predictions(rng, b, peaked=peaked)
  span = rng.choice([152.0, 112.0, 144.0, 104.0], b)
  rows = rng.permutation(b)[:9]
  pp = _pp(**overrides)
  got = pp_lib.batch_windows(out, rows, span[rows], 2.0, span[rows], pp, with_raw=True)
  want = official_ref(out, rows, span[rows], pp)
  for k, (g, w) in enumerate(zip(got, want)):
    assert set(g) == set(w)
    for key in w:
      assert_bits(g[key], w[key], (k, key))
  plain = pp_lib.batch_windows(out, rows, span[rows], 2.0, span[rows], pp)
  for g, w in zip(plain, want):
    assert set(g) == {"detr", "fused"}
    for key in g:
      assert_bits(g[key], w[key], key)


def test_official_batch_without_atss_head_and_without_rows():
  rng = np.random.default_rng(9)
  out = random_predictions(rng, 4)
  no_atss = dataclasses.replace(out, atss_logits=None, atss_deltas=None, atss_ctr=None)
  res = pp_lib.batch_windows(no_atss, [0, 2], [152.0, 104.0], 2.0, [150.0, 98.0], _pp())
  want = official_ref(out, [0, 2], [152.0, 104.0], _pp())
  for g, w in zip(res, want):
    assert_bits(g["detr"], w["detr"])
    assert g["fused"] is g["detr"]
  assert pp_lib.batch_windows(out, [], [], 2.0, [], _pp()) == []


def test_saliency_scores_equal_per_sample_casts():
  rng = np.random.default_rng(11)
  out = random_predictions(rng, 5)
  rows, real, valid = [4, 0, 2], [70, 50, 76], [72, 52, 76]
  official = pp_lib.saliency_scores(out, rows, real, valid, _pp())
  ranked = pp_lib.saliency_scores(out, rows, real, valid, _pp(convention="ranked"))
  sal = np.asarray(out.saliency_global)
  for k, (i, r, v) in enumerate(zip(rows, real, valid)):
    assert_bits(official[k], np.asarray(sal[i, :v], F32).astype(np.float16).astype(F32))
    assert_bits(ranked[k], np.asarray(sal[i, :r], F32))
