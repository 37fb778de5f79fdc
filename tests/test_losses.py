"""Losses, matching, schedule and post-processing against hand-worked and brute-force values."""

import itertools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import base, tiny
from sg_detr_jax.inference import postprocess
from sg_detr_jax.losses import alignment, detection, saliency
from sg_detr_jax.losses.matching import hungarian
from sg_detr_jax.models import atss
from sg_detr_jax.training.optimizer import epoch_schedule

LW = base.get_config().loss


def brute_force(cost, n):
  """Minimum total cost of assigning the first n GT columns to distinct queries."""
  q = cost.shape[0]
  return min(sum(cost[p[j], j] for j in range(n)) for p in itertools.permutations(range(q), n))


@pytest.mark.parametrize("seed", [0, 1])
def test_hungarian_matches_brute_force_padded_and_unpadded(seed):
  rng = np.random.default_rng(seed)
  cost = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)  # [sets, B, Q, W]
  mask = np.array([[True, True, True], [True, True, False], [True, False, False],
                   [False, False, False]])
  match = np.asarray(jax.jit(hungarian)(jnp.asarray(cost), jnp.asarray(mask)[None]))
  for s in range(2):
    for b in range(4):
      n = int(mask[b].sum())
      chosen = match[s, b, :n]
      assert len(set(chosen.tolist())) == n  # one-to-one
      got = sum(cost[s, b, chosen[j], j] for j in range(n))
      assert got == pytest.approx(brute_force(cost[s, b], n), abs=1e-5)


def test_perfect_predictions_give_zero_span_losses_and_padding_is_ignored():
  gt = jnp.array([[[0.3, 0.2], [0.7, 0.1], [0.0, 0.0]]])
  gt_mask = jnp.array([[True, True, False]])
  spans = jnp.full((1, 4, 2), 0.5).at[0, 2].set(gt[0, 0]).at[0, 0].set(gt[0, 1])
  match = jnp.array([[2, 0, 0]])
  logits, iou = jnp.zeros((1, 4)), jnp.zeros((1, 4))
  out = detection.set_losses(logits, spans, iou, gt, gt_mask, match, 0.1)
  assert float(out["span"]) == pytest.approx(0.0, abs=1e-7)
  assert float(out["giou"]) == pytest.approx(0.0, abs=1e-6)
  # class BCE at logit 0 is log 2 for every query; unmatched ones weigh 0.1: (2 + 2 * .1) / 4
  assert float(out["label"]) == pytest.approx(math.log(2) * 2.2 / 4, rel=1e-5)
  # IoU target of a perfect span is 1 -> BCE(0, 1) = log 2
  assert float(out["quality"]) == pytest.approx(math.log(2), rel=1e-5)
  changed = detection.set_losses(logits, spans, iou, gt.at[0, 2].set(jnp.array([0.9, 0.5])),
                                 gt_mask, match, 0.1)
  for k in out:
    assert float(out[k]) == pytest.approx(float(changed[k]))


def test_rank_contrastive_by_hand():
  # one row, two clips with equal scores; only r = 1 has a positive (clip 0):
  # -log(e^0 / (e^0 + e^0 + 1e-6)) / 12 summed over the single active threshold.
  scores = jnp.zeros((1, 2))
  labels = jnp.array([[1.0, 0.0]])
  mask = jnp.ones((1, 2), bool)
  got = saliency.rank_contrastive(scores, labels, mask, jnp.array([True]), 0.5, 12)
  assert float(got) == pytest.approx(-math.log(1 / (2 + 1e-6)) / 12, rel=1e-5)
  # masked clips leave the loss unchanged whatever their score
  got2 = saliency.rank_contrastive(jnp.array([[0.0, 0.0, 9.0]]), jnp.array([[1.0, 0, 0]]),
                                   jnp.array([[True, True, False]]), jnp.array([True]), 0.5, 12)
  assert float(got2) == pytest.approx(float(got), rel=1e-4)


def test_margin_and_bce_by_hand():
  s = jnp.array([[0.0, 0.0, 5.0]])
  m = saliency.margin_ranking(s, jnp.array([[0]]), jnp.array([[1]]), 0.15)
  assert float(m) == pytest.approx(2 * 0.15)
  mask = jnp.array([[True, True, False]])
  b = saliency.bce(s, jnp.array([[4.0, 0.0, 0.0]]), mask)
  assert float(b) == pytest.approx(math.log(2))  # the masked clip's 5.0 is ignored


def test_atss_losses_vanish_for_perfect_regression():
  anchors, _ = atss.make_anchors(8, (1,), (4,))
  anchors = jnp.asarray(anchors)
  gt = jnp.broadcast_to(jnp.array([2.0, 6.0]), (1, 8, 2))
  labels = jnp.zeros((1, 8), bool).at[0, 3:5].set(True)
  targets = atss.Targets(labels=labels, gt=gt, anchors=anchors,
                         anchor_mask=jnp.ones((1, 8), bool))
  pred = types.SimpleNamespace(atss_logits=jnp.where(labels, 20.0, -20.0),
                               atss_deltas=atss.encode(gt, anchors), atss_ctr=jnp.zeros((1, 8)))
  got = detection.atss_losses(pred, targets, LW)
  assert float(got["giou"]) == pytest.approx(0.0, abs=1e-5)
  assert float(got["span"]) == pytest.approx(0.0, abs=1e-5)
  assert float(got["label"]) < 1e-6


def test_epoch_schedule_by_hand():
  o = base.get_config().optim
  sched = epoch_schedule(o, steps_per_epoch=10)
  lr = lambda epoch, k=0: float(sched(epoch * 10 + k))
  assert lr(0) == pytest.approx(5e-6)
  assert lr(0, 9) == pytest.approx(5e-6)  # constant within an epoch
  assert lr(9) == pytest.approx(5e-6 + 9 / 45 * (5e-4 - 5e-6))
  assert lr(45) == pytest.approx(5e-4)
  assert lr(99) == pytest.approx(5e-4)
  assert lr(100) == pytest.approx(2.5e-4)
  assert lr(125) == pytest.approx(1.25e-4)


def test_nms_wbf_and_cleanup_by_hand():
  w = np.array([[0.0, 10.0, 0.9], [1.0, 10.0, 0.8], [20.0, 30.0, 0.7]])
  kept = postprocess.nms(w, 0.75, 10)  # IoU of the first two = 0.9 > 0.75
  np.testing.assert_allclose(kept, w[[0, 2]])
  a = np.array([[10.0, 20.0, 0.8]])
  b = np.array([[10.0, 20.0, 0.4]])
  fused = postprocess.weighted_boxes_fusion([a, b], (1.0, 2.5), 100.0, 0.8, 0.1)
  # one cluster: box unchanged, score = mean(.8, 2.5 * .4) * min(2, 2) / 3.5
  np.testing.assert_allclose(fused, [[10.0, 20.0, (0.8 + 1.0) / 2 * 2 / 3.5]])
  lone = postprocess.weighted_boxes_fusion([a, np.zeros((0, 3))], (1.0, 2.5), 100.0, 0.8, 0.1)
  np.testing.assert_allclose(lone, [[10.0, 20.0, 0.8 * 1 / 3.5]])
  clean = postprocess.clean_windows(np.array([[-3.0, 5.1, 1.0], [7.2, 7.4, 0.5],
                                              [149.0, 160.0, 0.2]]), 2.0, 150.0)
  np.testing.assert_allclose(clean, [[0.0, 6.0, 1.0], [7.0, 9.0, 0.5], [148.0, 150.0, 0.2]])


def _bce(x, t):
  p = 1 / (1 + math.exp(-x))
  return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def test_sigmoid_focal_by_hand():
  # logit 0 (p = 0.5), target 1: alpha * log(2) * (1 - 0.5)^2; target 0: (1 - alpha) * the same.
  got = detection.sigmoid_focal(jnp.array([0.0, 0.0, 2.0]), jnp.array([1.0, 0.0, 1.0]), 0.25, 2.0)
  p = 1 / (1 + math.exp(-2.0))
  want = [0.25 * math.log(2) * 0.25, 0.75 * math.log(2) * 0.25, 0.25 * _bce(2.0, 1) * (1 - p) ** 2]
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_negative_pair_by_hand():
  # Only valid clips of real-negative rows count: row 0 (logits 0 -> -log 0.5) and its valid clip.
  neg = jnp.array([[0.0, 50.0], [3.0, 3.0]])
  mask = jnp.array([[True, False], [True, True]])
  got = saliency.negative_pair(neg, mask, jnp.array([True, False]), 1e-7)
  assert float(got) == pytest.approx(math.log(2), rel=1e-6)
  # a saturated negative score is clamped at -log(eps)
  got = saliency.negative_pair(jnp.array([[100.0]]), jnp.array([[True]]), jnp.array([True]), 1e-7)
  assert float(got) == pytest.approx(-math.log(1e-7), rel=1e-4)


def test_lone_false_negative_row_is_the_official_near_zero():
  # One row of 4 clips, labels [2, 1, 0, 0], all valid, padded grid of 4: thresholds r = 1 (2
  # clips) and r = 2 (1 clip) have positives; c = log(1 + 1e-6) / (1 + 1e-6) in float32.
  one_plus = float(np.float32(1.0) + np.float32(1e-6))
  c = math.log(one_plus) / one_plus
  got = saliency.lone_row_rank_contrastive(jnp.array([2.0, 1.0, 0.0, 0.0]), jnp.ones(4, bool), 12,
                                           jnp.float32(4.0))
  assert float(got) == pytest.approx(c * (2 / 4 + 1 / 4) / 12, rel=1e-5)
  assert float(got) < 1e-7


def test_moment_sentence_alignment_by_hand():
  # Orthogonal unit moments / sentences matched on the diagonal: cos = I. Column j: row j has
  # target 1 at logit 1, the other row target 0 at logit 0; mean over the 2 rows, sum over columns.
  m = jnp.eye(2) * 3.0  # norms do not matter (cosines)
  got = alignment.moment_sentence_alignment(m, jnp.eye(2), 0.5, 2.0)
  p1 = 1 / (1 + math.exp(-1.0))
  pos = 0.5 * _bce(1.0, 1) * (1 - p1) ** 2
  neg = 0.5 * math.log(2) * 0.5 ** 2
  assert float(got) == pytest.approx(2 * (pos + neg) / 2, rel=1e-5)


def test_moment_clip_classification_by_hand():
  # d = 4, moment (2, 0, 0, 0); clip 0 = (1, 0, 0, 0) -> logit 2 / sqrt(4) = 1, relevant; clip 1
  # = 0 -> logit 0, irrelevant; clip 2 is masked. Mean over all B x L = 3 entries.
  moment = jnp.array([[2.0, 0, 0, 0]])
  memory = jnp.array([[[1.0, 0, 0, 0], [0, 0, 0, 0], [9.0, 9, 9, 9]]])
  got = alignment.moment_clip_classification(moment, memory, jnp.array([[True, False, True]]),
                                             jnp.array([[True, True, False]]))
  assert float(got) == pytest.approx((_bce(1.0, 1) + math.log(2)) / 3, rel=1e-5)


def test_group_losses_by_hand():
  # Two slots, one positive with a perfect box and logit 0, one valid negative with logit 0:
  # label = mean BCE over valid slots = log 2; span / giou over the positive only = 0.
  spans = jnp.array([[[0.5, 0.2], [0.1, 0.1]]])
  got = detection.group_losses(jnp.zeros((1, 2)), spans, jnp.array([[True, False]]),
                               jnp.array([[[0.5, 0.2], [0.9, 0.1]]]), jnp.ones((1, 2), bool))
  assert float(got["label"]) == pytest.approx(math.log(2), rel=1e-6)
  assert float(got["span"]) == pytest.approx(0.0, abs=1e-7)
  assert float(got["giou"]) == pytest.approx(0.0, abs=1e-6)
  # the positive's box off by 0.1 in start and end: L1 on (start, end) averaged over 2 coords
  got = detection.group_losses(jnp.zeros((1, 2)), spans.at[0, 0, 0].set(0.6),
                               jnp.array([[True, False]]),
                               jnp.array([[[0.5, 0.2], [0.9, 0.1]]]), jnp.ones((1, 2), bool))
  assert float(got["span"]) == pytest.approx(0.1, rel=1e-5)


def test_total_is_the_weighted_sum_and_every_term_has_one_weight():
  """Every weight field gets a distinct value, so a term that took another term's weight shows."""
  from sg_detr_jax.losses import total
  from sg_detr_jax.models import outputs, sg_detr
  from sg_detr_jax.data.random_batch import random_batch
  c = tiny.get_config()
  c.data.video_dim, c.data.text_dim = 16, 8
  c.model.denoise = True
  lw = c.loss
  fields = ("span", "giou", "label", "quality", "saliency", "encoder_coef", "collab_coef",
            "denoise_coef", "atss_label", "atss_span", "atss_giou", "atss_ctrness", "ms_align",
            "momcls")
  for i, name in enumerate(fields):
    lw[name] = 1.0 + 0.1 * i
  n = c.model.decoder_layers
  table = total.weights_table(c, n)
  want = {"sal_local_bce": lw.saliency, "sal_global_rank": lw.saliency, "span_0": lw.span,
          f"giou_{n - 1}": lw.giou, "label_1": lw.label, "quality_0": lw.quality,
          "enc_span": lw.encoder_coef * lw.span, "enc_quality": lw.encoder_coef * lw.quality,
          "co_label_0": lw.collab_coef * lw.label, f"co_giou_{n - 1}": lw.collab_coef * lw.giou,
          "dn_span_1": lw.denoise_coef * lw.span, "atss_label": lw.atss_label,
          "atss_span": lw.atss_span, "atss_giou": lw.atss_giou,
          "atss_ctrness": lw.atss_ctrness, "ms_align": lw.ms_align, "momcls": lw.momcls}
  assert {k: table[k] for k in want} == pytest.approx(want)

  # The objective of a real (random-weight) training forward: its terms are the table's terms.
  graphdef, params = nnx.split(sg_detr.create(c), nnx.Param)
  batch = jax.tree_util.tree_map(jnp.asarray, random_batch(c, 2, seed=0, varied=True))

  def forward(p, b):
    targets = atss.training_targets(b, c.model)
    return nnx.merge(graphdef, p)(b, key=jax.random.key(0), train=True,
                                  atss_targets=targets), targets

  out, targets = jax.jit(forward)(params, batch)
  objective = jax.jit(lambda o, t, b: total.compute_losses(o, t, b, c))
  got, terms = objective(out, targets, batch)
  assert sorted(terms) == sorted(table)
  assert float(got) == pytest.approx(sum(table[k] * float(v) for k, v in terms.items()), rel=1e-6)
  assert all(np.isfinite(float(v)) for v in terms.values())
  # A term without a weight is an error, not a silent zero or another term's weight.
  extra = outputs.TrainOutputs(**{**{f: getattr(out, f) for f in (
      "predictions", "saliency_local_neg", "saliency_global_neg", "sentence", "moment",
      "moment_memory", "collab", "collab_positives")}, "denoise": None})
  with pytest.raises(ValueError, match="weights without a term"):
    objective(extra, targets, batch)
