"""Losses, matching, schedule and post-processing against hand-worked and brute-force values."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from sg_detr_jax.inference import postprocess
from sg_detr_jax.losses import detection, saliency
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
  out = {"anchor_mask": jnp.ones((1, 8), bool), "atss_labels": labels, "atss_gt": gt,
         "anchors": anchors, "atss_logits": jnp.where(labels, 20.0, -20.0),
         "atss_deltas": atss.encode(gt, anchors)[None][0][None],
         "atss_ctr": jnp.zeros((1, 8))}
  got = detection.atss_losses(out, LW)
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
