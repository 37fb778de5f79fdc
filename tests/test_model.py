"""The whole SG-DETR model: official parameter table, shapes, masking, determinism, bf16, groups."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import base
from configs.ablations import common as ablations
from launch import summary
from sg_detr_jax.data.random_batch import random_batch
from sg_detr_jax.models import (atss, outputs, param_map, precision, query_groups,
                                 query_selector, sg_detr)
from sg_detr_jax.models.detr_head import DETRHead
from sg_detr_jax.models.layers import KeySeq
from sg_detr_jax.training import collab_size
from sg_detr_jax.training import steps as steps_lib

from conftest import SHARED, tiny_config

OFFICIAL = os.path.join(SHARED, "reference", "official_sgdetr_state_dict.json")


def tiny_batch(config):
  """Rows of different lengths (row 1: 16 of 24 clips; row 2: 5 of 8 tokens) and two windows."""
  return random_batch(config, 4, varied=True)


class Jitted:
  """The model's forward jitted once per mode (eager nnx is too slow for a test suite)."""

  def __init__(self, model):
    self.graph, self.state = nnx.split(model)
    self._fns = {}

  def __call__(self, batch, key=None, train=False, state=None):
    if train not in self._fns:
      def forward(s, b, k):
        model = nnx.merge(self.graph, s)
        targets = atss.training_targets(b, model.cfg) if train else None
        return model(b, key=k, train=train, atss_targets=targets)
      self._fns[train] = jax.jit(forward)
    return self._fns[train](self.state if state is None else state, batch, key)


@pytest.fixture(scope="module")
def tiny_model():
  c = tiny_config()
  return c, Jitted(sg_detr.create(c))


def test_full_parameter_table_matches_official_state_dict():
  with open(OFFICIAL) as f:
    off = json.load(f)
  theirs = {e["key"]: tuple(e["shape"]) for e in off["state_dict"] if e["kind"] == "param"}
  c = base.get_config()
  ours = param_map.flat_params(sg_detr.create(c))
  rules = list(param_map.sg_detr(c.model))
  assert sorted(r[0] for r in rules) == sorted(ours), "every leaf of ours exactly once"
  assert sorted(r[1] for r in rules) == sorted(theirs), "every official parameter exactly once"
  for path, key, transform in rules:
    assert param_map.official_shape(ours[path].shape, transform) == theirs[key], (path, key)
  total = sum(int(np.prod(v.shape)) for v in ours.values())
  assert total == off["num_params_trainable"] == 13_472_294
  per_module = summary.summarize(c)["modules"]
  assert per_module == off["params_by_top_module"]


def test_output_shapes_at_qvhighlights_size():
  shapes = summary.summarize(base.get_config(), batch_size=3)["outputs"]
  ev, tr = shapes["eval"], shapes["train"]
  assert ev["pred_spans"] == [3, 3, 25, 2] and ev["pred_iou"] == [3, 3, 25]
  assert ev["saliency_global"] == [3, 76] and ev["atss_deltas"] == [3, 285, 2]
  assert "collab.logits" not in ev and "saliency_local_neg" not in ev
  # The collab group is as large as the batch needs (max_b |P_b| of the dummy batch's one window).
  k = collab_size.batch_positives(base.get_config(), random_batch(base.get_config(), 3))
  assert 0 < k < 48 and tr["collab.logits"] == [3, 3, k] and tr["collab.target"] == [3, k, 2]
  assert tr["moment_memory"] == [3, 76, 256] and tr["sentence"] == [3, 256]
  assert tr["anchor_mask"] == [3, 285] and tr["anchors"] == [285, 2]


def test_tiny_forward_shapes_and_finite(tiny_model):
  c, model = tiny_model
  batch = tiny_batch(c)
  out = model(batch, key=jax.random.key(0, impl="rbg"), train=True)
  layers = c.model.decoder_layers
  assert out.predictions.pred_logits.shape == (layers, 4, 25)
  size = c.model.collab_size
  assert out.collab.spans.shape == (layers, 4, size, 2)
  for k, v in outputs.flatten(out).items():
    assert np.all(np.isfinite(np.asarray(v, np.float32))), k
  # spans are sigmoid outputs; the collab group holds every ATSS positive of the batch
  assert np.all((out.predictions.pred_spans > 0) & (out.predictions.pred_spans < 1))
  num_pos = np.asarray(atss.training_targets(batch, c.model).labels).sum(1)
  assert num_pos.min() > 0 and num_pos.max() <= size
  assert int(np.asarray(out.collab.valid).sum()) == num_pos.max() == int(out.collab_positives)
  np.testing.assert_array_equal(np.asarray(out.collab.label).sum(1), num_pos)


def test_padded_text_tokens_change_nothing(tiny_model):
  c, model = tiny_model
  b1 = tiny_batch(c)
  b2 = {k: v.copy() for k, v in b1.items()}
  b2["text"][2, 5:] = 100.0  # garbage behind the mask
  o1, o2 = outputs.flatten(model(b1)), outputs.flatten(model(b2))
  for k in o1:
    np.testing.assert_allclose(o1[k], o2[k], rtol=1e-5, atol=1e-5, err_msg=k)


def test_padded_clips_do_not_change_saliency_at_valid_clips(tiny_model):
  # (The FPN convolutions see the padded rows' features, as in the official model, so only the
  # attention-based outputs are padding-invariant.)
  c, model = tiny_model
  b1 = tiny_batch(c)
  b2 = {k: v.copy() for k, v in b1.items()}
  b2["video"][1, 16:] = 50.0
  o1, o2 = outputs.flatten(model(b1)), outputs.flatten(model(b2))
  for k in ("saliency_local", "saliency_global"):
    np.testing.assert_allclose(o1[k][1, :16], o2[k][1, :16], rtol=1e-5, atol=1e-5)
  assert not np.allclose(o1["saliency_local"][1, 16:], o2["saliency_local"][1, 16:])


def test_determinism(tiny_model):
  c, model = tiny_model
  b = tiny_batch(c)
  o1, o2 = outputs.flatten(model(b)), outputs.flatten(model(b))
  for k in o1:
    np.testing.assert_array_equal(o1[k], o2[k])
  t1 = model(b, key=jax.random.key(1, impl="rbg"), train=True)
  t2 = model(b, key=jax.random.key(1, impl="rbg"), train=True)
  t3 = model(b, key=jax.random.key(2, impl="rbg"), train=True)
  np.testing.assert_array_equal(t1.predictions.pred_logits, t2.predictions.pred_logits)
  assert not np.allclose(t1.predictions.pred_logits, t3.predictions.pred_logits)
  with pytest.raises(ValueError, match="PRNG key"):
    model(b, train=True)


def test_predict_in_parts_equals_the_whole_batch():
  """model.predict_rows_per_part: the inference forward in parts of 1 row (a scan of five parts,
  unrolled by two: a real loop), 2 and 3 rows (the last part shorter) gives the whole batch's
  predictions, ATSS candidates included: the anchor grid stays the whole batch's (official
  "batch" grid) although the last parts hold only short videos."""
  c = tiny_config()
  backend = jax.default_backend()
  c.model.predict_rows_per_part[backend] = 0
  params = nnx.split(sg_detr.create(c), nnx.Param)[1]
  batch = random_batch(c, 5, varied=True)
  batch["video_mask"][3:, 12:] = 0  # rows 3-4: 12 clips, shorter than rows 0, 2 (the grid)
  inputs = {k: batch[k] for k in ("video", "video_mask", "text", "text_mask")}
  whole = outputs.flatten(steps_lib.make_predict_step(c)(params, inputs))
  for rows in (1, 2, 3):
    c.model.predict_rows_per_part[backend] = rows
    parts = outputs.flatten(steps_lib.make_predict_step(c)(params, inputs))
    assert sorted(parts) == sorted(whole)
    for k in whole:
      assert parts[k].shape == whole[k].shape, k
      np.testing.assert_allclose(parts[k], whole[k], rtol=1e-5, atol=1e-5, err_msg=f"{rows}: {k}")
    np.testing.assert_array_equal(parts["anchor_mask"], whole["anchor_mask"])
  # the last part's own grid would be shorter: the whole batch's grid is what kept them equal
  own = np.asarray(atss.anchor_grid(jnp.asarray(batch["video_mask"][3:]), c.model)[1])
  assert own.sum() < whole["anchor_mask"][3:].sum()


def test_bf16_compute_is_finite(tiny_model):
  c, model = tiny_model
  bf_state = precision.cast_floating(model.state, jnp.bfloat16)
  batch = precision.cast_floating(tiny_batch(c), jnp.bfloat16)
  out = model(batch, key=jax.random.key(0, impl="rbg"), train=True, state=bf_state)
  assert out.predictions.pred_logits.dtype == jnp.bfloat16
  for k, v in outputs.flatten(out).items():
    assert np.all(np.isfinite(np.asarray(v, np.float32))), k
  ref = model(tiny_batch(c))
  low = model(batch, state=bf_state).saliency_local
  np.testing.assert_allclose(np.asarray(low, np.float32), ref.saliency_local, atol=0.5)


def test_group_mask_isolates_groups():
  c = tiny_config()
  c.model.denoise = True
  head = DETRHead(c.model, nnx.Rngs(0))
  d, q, k_co, dn_groups, per_group = c.model.d_model, 5, 4, 2, 3
  co_valid = jnp.array([True, True, True, False])
  dn_valid = jnp.array([True, True, False] * dn_groups)
  mask = query_groups.group_mask(dn_groups * per_group, dn_groups, dn_valid, k_co, co_valid, q)
  total = dn_groups * per_group + k_co + q
  rng = np.random.default_rng(0)
  content = jnp.asarray(rng.normal(size=(2, total, d)), jnp.float32)
  ref = jnp.asarray(rng.normal(size=(2, total, 2)), jnp.float32)
  memory = jnp.asarray(rng.normal(size=(2, 12, d)), jnp.float32)
  mmask = jnp.ones((2, 12), bool)
  run = lambda ct, rf: head(ct, rf, memory, memory, mmask, mask, KeySeq(None))[1]
  base_out = run(content, ref)
  groups = {"dn0": slice(0, 3), "dn1": slice(3, 6), "co": slice(6, 10), "reg": slice(10, 15)}
  for name, sl in groups.items():
    changed = run(content.at[:, sl].add(1.0), ref.at[:, sl].add(0.5))
    for other, osl in groups.items():
      same = np.allclose(changed[:, :, osl], base_out[:, :, osl], atol=1e-6)
      assert same == (other != name), (name, other)
  # an invalid (padding) slot is invisible to the valid slots of its group
  changed = run(content.at[:, 9].add(1.0), ref)
  np.testing.assert_allclose(changed[:, :, 6:9], base_out[:, :, 6:9], atol=1e-6)
  changed = run(content.at[:, 2].add(1.0), ref)
  np.testing.assert_allclose(changed[:, :, 0:2], base_out[:, :, 0:2], atol=1e-6)


def test_proposals_by_hand():
  masks = [jnp.array([[True, True, False, False]]), jnp.array([[True] * 8])]
  prop, valid = query_selector.proposals(masks, (0.05, 0.99), (0.0125, 0.9875))
  np.testing.assert_array_equal(valid[0], [True, True, False, False] + [False] * 8)
  p = jax.nn.sigmoid(prop[0, :2])
  np.testing.assert_allclose(p, [[0.25, 0.05], [0.75, 0.05]], rtol=1e-5)  # (k + .5) / n_valid
  assert np.all(np.asarray(prop[0, 2:]) == query_selector.INVALID_PROPOSAL)


def test_query_selector_picks_only_valid_tokens():
  qs = query_selector.QuerySelector(16, 3, 0.35, (0.05, 0.2), (0.0125, 0.9875), nnx.Rngs(0))
  masks = [jnp.array([[True] * 4 + [False] * 4]), jnp.array([[True] * 2 + [False] * 2])]
  tokens = jnp.asarray(np.random.default_rng(0).normal(size=(1, 12, 16)), jnp.float32)
  out = qs(tokens, masks)
  assert set(np.asarray(out["index"][0]).tolist()) <= {0, 1, 2, 3, 8, 9}
  assert out["content"].shape == (1, 3, 16)


def test_assignment_ignores_anchors_beyond_the_video():
  # GT [7, 15] (center 11), anchors of 3 clips at centers k + 0.5, 4 candidates.
  anchors, _ = atss.make_anchors(16, (1,), (4,))
  gt = jnp.array([[7.0, 15.0]])
  mask = jnp.arange(16) < 12
  labels, _, _ = atss.assign(jnp.asarray(anchors), [16], gt, jnp.array([True]), 4, mask)
  labels_all, _, _ = atss.assign(jnp.asarray(anchors), [16], gt, jnp.array([True]), 4)
  # all anchors: candidates 9..12 (IoU 3/8 each: all >= mean + 0) are positive;
  # only the first 12 anchors: candidates 8..11 (IoU 3/8 each) instead.
  assert np.nonzero(np.asarray(labels_all))[0].tolist() == [9, 10, 11, 12]
  assert np.nonzero(np.asarray(labels))[0].tolist() == [8, 9, 10, 11]


def test_collab_selection_positives_first_then_random_negatives():
  labels = jnp.array([[False, True, False, True, False, False],
                      [False, False, False, False, True, False]])
  anchors = jnp.array([[0.0, 3.0], [1.0, 4.0], [2.0, 5.0], [3.0, 6.0], [4.0, 7.0], [5.0, 8.0]])
  gt = jnp.broadcast_to(jnp.array([1.0, 5.0]), (2, 6, 2))
  amask = jnp.array([[True] * 6, [True] * 5 + [False]])
  out = query_groups.collab_selection(labels, gt, anchors, amask, jnp.array([8, 8]), 4,
                                      jax.random.key(0, impl="rbg"))
  idx = np.asarray(out["index"])
  assert idx[0, :2].tolist() == [1, 3] and idx[1, 0] == 4
  assert np.asarray(out["valid"]).tolist() == [True, True, False, False]
  assert np.asarray(out["label"]).tolist() == [[True, True, False, False],
                                               [True, False, False, False]]
  assert 5 not in idx[1, :2]  # a negative comes from the sample's valid anchors
  np.testing.assert_allclose(out["target"][0, 0], [3.0 / 8, 4.0 / 8])
  np.testing.assert_allclose(jax.nn.sigmoid(out["reference"][0, 0]), [2.5 / 8, 3.0 / 8], rtol=1e-5)


def test_denoise_noise_bounds():
  spans = jnp.array([[[0.5, 0.2], [0.0, 0.0]]])
  dn = query_groups.denoise_queries(spans, jnp.array([[True, False]]), 3, 0.5, 1.25,
                                    jax.random.key(0, impl="rbg"))
  ref = np.asarray(jax.nn.sigmoid(dn["reference"][0]))
  x = np.stack([ref[:, 0] - ref[:, 1] / 2, ref[:, 0] + ref[:, 1] / 2], -1)
  gt = np.array([0.4, 0.6])
  shift = np.abs(x - gt).max(-1)
  label = np.asarray(dn["label"][0])
  present = np.asarray(dn["present"][0])
  assert label.tolist() == [True, False, False, False] * 3
  assert np.all(shift[label] <= 0.1 * 0.5 + 1e-3)  # |u| < 1: within lambda * w / 2
  neg = present & ~label
  assert np.all(shift[neg] >= 1.25 * 0.1 * 0.5 - 1e-3)
  assert np.asarray(dn["valid"]).tolist() == [True, False] * 6


@pytest.mark.parametrize("row", ablations.ROWS)
def test_ablation_rows(row):
  c = tiny_config(ablations.get_config(row))
  c.model.collab_size = 8
  model = sg_detr.create(c)
  names = param_map.flat_params(model)
  assert sorted(r[0] for r in param_map.sg_detr(c.model)) == sorted(names)
  batch = random_batch(c, 2)
  out = outputs.flatten(jax.eval_shape(
      lambda b, k: model(b, key=k, train=True, atss_targets=atss.training_targets(b, c.model)),
      batch, jax.random.key(0, impl="rbg")))
  assert ("pred_iou" in out) == (row in "cde")
  assert ("collab.logits" in out) == (row == "e") == ("atss_logits" in out)
  assert any("q_proj" in n for n in names) == (row == "a")
  assert any("global_saliency_head" in n for n in names) == (row in "de")
