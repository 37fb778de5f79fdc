"""Model building blocks: parameter parity with the official state_dict, masking, ATSS by hand."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sg_detr_jax.models import (alignment, atss, atss_head, fpn, input_projection, layers,
                                local_saliency, param_map, sgca, transformer)

from conftest import SHARED

OFFICIAL = os.path.join(SHARED, "reference", "official_sgdetr_state_dict.json")


@pytest.fixture(scope="module")
def official():
  if not os.path.isfile(OFFICIAL):
    pytest.fail(f"missing {OFFICIAL}")
  with open(OFFICIAL) as f:
    d = json.load(f)
  return d, {e["key"]: tuple(e["shape"]) for e in d["state_dict"] if e["kind"] == "param"}


RNGS = nnx.Rngs(0)
MODULES = {
    # official top-level module: (our module, rules over paths relative to it)
    "input_vid_proj": (lambda: input_projection.InputProjection(514, 256, 0.5, RNGS),
                       lambda: param_map.input_projection("m", "input_vid_proj")),
    "input_txt_proj": (lambda: input_projection.InputProjection(512, 256, 0.5, RNGS),
                       lambda: param_map.input_projection("m", "input_txt_proj")),
    "local_saliency_head": (
        lambda: local_saliency.LocalSaliencyHead(256, 8, 1024, 2, 0.1, 3.0, RNGS),
        lambda: param_map.local_saliency("m", "local_saliency_head", 2)),
    "txt2vis_sal_encoder": (lambda: sgca.SGCAEncoder(256, 8, 1024, 2, 0.1, 0.15, RNGS),
                            lambda: param_map.sgca("m", "txt2vis_sal_encoder", 2)),
    "det_encoder": (lambda: transformer.Encoder(256, 8, 1024, 3, 0.1, 0.15, RNGS),
                    lambda: param_map.encoder("m", "det_encoder.encoder", 3)),
    "fpn": (lambda: fpn.FPN(256, RNGS), lambda: param_map.fpn("m", "fpn")),
    "aux_det_head": (lambda: atss_head.ATSSHead(256, 3, 4, 0.35, RNGS),
                     lambda: param_map.atss_head("m", "aux_det_head", 3, 4)),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_matches_official_names_shapes_and_count(official, name):
  meta, shapes = official
  make, rules = MODULES[name]
  ours = {f"m.{k}": v for k, v in param_map.flat_params(make()).items()}
  rules = list(rules())
  theirs = {k: s for k, s in shapes.items() if k.startswith(name + ".")}
  assert sorted(r[0] for r in rules) == sorted(ours), "every leaf of ours exactly once"
  assert sorted(r[1] for r in rules) == sorted(theirs), "every official key exactly once"
  for path, key, transform in rules:
    assert param_map.official_shape(ours[path].shape, transform) == theirs[key], (path, key)
  assert sum(v.size for v in ours.values()) == meta["params_by_top_module"][name]


def test_conv_and_linear_transforms_round_trip():
  w = np.arange(24.).reshape(4, 2, 3)  # ours [k, in, out]
  assert param_map.to_official(w, "conv").shape == (3, 2, 4)
  np.testing.assert_array_equal(param_map.to_official(w, "conv")[1, 0, 2], w[2, 0, 1])


def test_anchor_layout_by_hand():
  anchors, level = atss.make_anchors(4, (0.5, 1, 2, 4), (4, 16, 32, 64))
  assert len(anchors) == 8 + 4 + 2 + 1 and level.tolist() == [0] * 8 + [1] * 4 + [2] * 2 + [3]
  # level 0, k=0: center 0.25, extent (4-1)/2 = 1.5 either side; level 3, k=0: center 2, +-31.5.
  np.testing.assert_allclose(anchors[0], [-1.25, 1.75])
  np.testing.assert_allclose(anchors[-1], [2 - 31.5, 2 + 31.5])


def test_box_coding_round_trip_and_hand_value():
  anchor = jnp.array([[0.0, 3.0]])  # aw = 4, ac = 1.5
  gt = jnp.array([[1.0, 8.0]])      # gw = 8, gc = 4.5
  d = atss.encode(gt, anchor)
  np.testing.assert_allclose(d, [[10 * 3 / 4, 5 * np.log(2)]], rtol=1e-6)
  np.testing.assert_allclose(atss.decode(d, anchor), gt, rtol=1e-6)


def test_assignment_by_hand():
  # One level, stride 1, size 4 over 8 clips: anchor k = [k - 1, k + 2] (center k + 0.5).
  anchors = jnp.asarray(atss.make_anchors(8, (1,), (4,))[0])
  valid = jnp.array([True, False])
  # GT [1, 7] (center 4): the 4 closest anchors are 2..5, each with IoU 3/6 = 0.5, so mean + std =
  # 0.5 and all four are positive (centers 2.5..5.5 lie inside the GT).
  labels, matched, targets = atss.assign(anchors, [8], jnp.array([[1.0, 7.0], [0, 0]]), valid, 4)
  assert np.nonzero(np.asarray(labels))[0].tolist() == [2, 3, 4, 5]
  assert np.asarray(matched)[2:6].tolist() == [0, 0, 0, 0]
  np.testing.assert_allclose(atss.decode(targets[3], anchors[3]), [1.0, 7.0], rtol=1e-5)
  # GT [2, 6], top 3: anchors 3, 4 (IoU 3/4) and one of 2 / 5 (IoU 2/5): mean 0.633 + std 0.202 =
  # 0.835 > 0.75, so nothing is positive -- the adaptive threshold at work.
  labels, _, _ = atss.assign(anchors, [8], jnp.array([[2.0, 6.0], [0, 0]]), valid, 3)
  assert not np.asarray(labels).any()
  # Top 2: anchors 3 and 4 only, mean 0.75, std 0 -> both positive.
  labels, _, _ = atss.assign(anchors, [8], jnp.array([[2.0, 6.0], [0, 0]]), valid, 2)
  assert np.nonzero(np.asarray(labels))[0].tolist() == [3, 4]


def test_fpn_levels_and_masks():
  m = fpn.FPN(16, nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (2, 12, 16))
  mask = jnp.array([[True] * 12, [True] * 8 + [False] * 4])
  feats, masks = m(x, mask)
  assert [f.shape[1] for f in feats] == [24, 12, 6, 3]
  assert masks[3].tolist() == [[True] * 3, [True, True, False]]


def _keys():
  return layers.KeySeq(None)


def test_local_saliency_ignores_padded_text():
  head = local_saliency.LocalSaliencyHead(16, 4, 32, 2, 0.1, 3.0, nnx.Rngs(0))
  k1, k2 = jax.random.split(jax.random.key(1))
  text = jax.random.normal(k1, (1, 6, 16))
  video = jax.random.normal(k2, (1, 5, 16))
  mask = jnp.array([[True] * 4 + [False] * 2])
  s1, _ = head(text, mask, video, _keys())
  s2, _ = head(text.at[:, 4:].set(100.0), mask, video, _keys())
  np.testing.assert_allclose(s1, s2, atol=1e-5)
  # At init the score is exp(3) * cos + 0: bounded by e^3.
  assert float(jnp.abs(s1).max()) <= np.exp(3.0) + 1e-4


def test_sgca_gate_and_text_padding():
  enc = sgca.SGCAEncoder(16, 4, 32, 2, 0.1, 0.15, nnx.Rngs(0))
  ks = jax.random.split(jax.random.key(2), 3)
  video, pos = jax.random.normal(ks[0], (1, 4, 16)), jax.random.normal(ks[1], (1, 4, 16))
  text = jax.random.normal(ks[2], (1, 5, 16))
  mask = jnp.array([[True] * 3 + [False] * 2])
  sal = jnp.zeros((1, 4))
  out = enc(video, pos, text, mask, sal, _keys())
  np.testing.assert_allclose(out, enc(video, pos, text.at[:, 3:].set(-7.0), mask, sal, _keys()),
                             atol=1e-5)
  # The gate matters: very negative saliency switches the text context off for that clip.
  off = enc(video, pos, text, mask, sal.at[0, 0].set(-1e4), _keys())
  assert not np.allclose(off[0, 0], out[0, 0], atol=1e-3)
  np.testing.assert_allclose(off[0, 1:], out[0, 1:], atol=1e-5)


def test_encoder_ignores_padded_clips_and_is_deterministic_in_eval():
  enc = transformer.Encoder(16, 4, 32, 2, 0.1, 0.15, nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(3), (2, 6, 16))
  pos = jnp.zeros_like(x)
  mask = jnp.array([[True] * 6, [True] * 4 + [False] * 2])
  a = enc(x, pos, mask, _keys())
  b = enc(x.at[1, 4:].set(50.0), pos, mask, _keys())
  np.testing.assert_allclose(a[1, :4], b[1, :4], atol=1e-5)
  np.testing.assert_array_equal(a, enc(x, pos, mask, _keys()))
  c = enc(x, pos, mask, layers.KeySeq(jax.random.key(0)))  # training mode: dropout / DropPath
  assert not np.allclose(a, c)


def test_dropout_masks_have_the_rate_and_are_independent():
  keys = layers.KeySeq(jax.random.key(3))
  s1, s2 = keys(), keys()
  assert not np.array_equal(np.asarray(s1), np.asarray(s2))
  for rate in (0.1, 0.5):
    m1 = np.asarray(layers.keep_mask(s1, rate, (256, 512)))
    m2 = np.asarray(layers.keep_mask(s2, rate, (256, 512)))
    n = m1.size
    # Binomial: 5 standard deviations of the keep share.
    tol = 5 * np.sqrt(rate * (1 - rate) / n)
    assert abs(m1.mean() - (1 - rate)) < tol and abs(m2.mean() - (1 - rate)) < tol
    # Neighbours along either axis and the two seeds' masks are uncorrelated.
    for a, b in ((m1[:, 1:], m1[:, :-1]), (m1[1:], m1[:-1]), (m1, m2)):
      corr = np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1]
      assert abs(corr) < 5 / np.sqrt(a.size), corr
  # Same seed -> same mask (a resumed run replays exactly); dropout keeps the expectation.
  np.testing.assert_array_equal(np.asarray(layers.keep_mask(s1, 0.1, (7, 9))),
                                np.asarray(layers.keep_mask(s1, 0.1, (7, 9))))
  x = jnp.ones((512, 512))
  assert abs(float(layers.dropout(x, 0.3, s1).mean()) - 1.0) < 0.01
  # Real PRNG keys (DN noise, collab negatives) differ from each other.
  k1, k2 = keys.key(), keys.key()
  assert not np.array_equal(np.asarray(jax.random.key_data(k1)), np.asarray(jax.random.key_data(k2)))


def _two_pass_moment(enc: transformer.Encoder, x, pos, plus_keys, minus_keys, relevant, keys):
  """The official moment encoder: two full passes over [token; clips], one per key set."""
  plus, minus = enc(x, pos, plus_keys, keys), enc(x, pos, minus_keys, keys)
  return plus[:, 0], minus[:, 0], jnp.where(relevant[..., None], plus[:, 1:], minus[:, 1:])


def test_alignment_last_layers_compute_the_rows_read_only_and_equal_full_passes():
  d, length = 16, 7
  rngs = nnx.Rngs(1)
  moment = alignment.MomentEncoder(d, 4, 32, 1, 0.1, 0.15, rngs)
  sentence = alignment.SentenceEncoder(d, 4, 32, 1, 0.1, 0.15, rngs)
  video = jax.random.normal(jax.random.key(0), (3, length, d))
  video_pos = jax.random.normal(jax.random.key(1), (3, length, d))
  video_mask = jnp.arange(length)[None] < jnp.array([[7], [5], [6]])
  # Row 2 has no relevant clip: its moment token attends to itself only.
  relevant = jnp.array([[0, 1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 0, 0, 0], [0] * 7], bool) & video_mask

  def merged(model):
    return model(video, video_pos, video_mask, relevant, _keys())

  def separate(model):
    x = alignment._prepend(model.moment_rep_token[...], video)
    pos = alignment._prepend(model.moment_rep_pos[...], video_pos)
    return _two_pass_moment(model.encoder, x, pos,
                            alignment._with_token_mask(video_mask & relevant),
                            alignment._with_token_mask(video_mask & ~relevant), relevant, _keys())

  for a, b in zip(nnx.jit(merged)(moment), nnx.jit(separate)(moment)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # The same gradients: the rows not computed had none.
  loss = lambda f: lambda m: sum((o * jnp.arange(o.size).reshape(o.shape) / o.size).sum()
                                 for o in f(m))
  ga, gb = nnx.jit(nnx.grad(loss(merged)))(moment), nnx.jit(nnx.grad(loss(separate)))(moment)
  for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # The moment token with no relevant clip differs from the one with the others (not one pass).
  tok_plus, tok_minus, _ = nnx.jit(merged)(moment)
  assert not np.allclose(tok_plus[2], tok_minus[2], atol=1e-3)

  text = jax.random.normal(jax.random.key(2), (3, 5, d))
  text_mask = jnp.arange(5)[None] < jnp.array([[5], [3], [1]])
  x = alignment._prepend(sentence.sent_rep_token[...], text)
  pos = alignment._prepend(sentence.sent_rep_pos[...], jnp.zeros_like(text))
  full = sentence.encoder(x, pos, alignment._with_token_mask(text_mask), _keys())[:, 0]
  np.testing.assert_allclose(sentence(text, text_mask, _keys()), full, rtol=1e-5, atol=1e-6)


def test_drop_path_of_two_merged_passes_draws_once_per_sample_and_pass():
  seed = layers.KeySeq(jax.random.key(5))()
  b, rows, rate = 4096, 6, 0.5
  second = jnp.broadcast_to(jnp.array([False, True, False, True, True, False]), (b, rows))
  y = np.asarray(layers.drop_path(jnp.ones((b, rows, 3)), rate, seed, second))[..., 0]
  kept = y > 0
  # One draw per sample and pass: a pass's rows are kept or dropped together ...
  assert (kept[:, [0, 2, 5]] == kept[:, [0]]).all() and (kept[:, [1, 3, 4]] == kept[:, [1]]).all()
  # ... the two passes' draws are independent (they differ for 2 p (1 - p) of the samples) ...
  differ = (kept[:, 0] != kept[:, 1]).mean()
  assert abs(differ - 2 * rate * (1 - rate)) < 5 * np.sqrt(0.25 / b), differ
  # ... and each has the rate, with kept rows scaled by 1 / (1 - rate).
  assert abs(kept[:, 0].mean() - (1 - rate)) < 5 * np.sqrt(0.25 / b)
  np.testing.assert_allclose(y[kept], 1 / (1 - rate))
