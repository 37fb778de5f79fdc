"""Input pipeline: layout rules worked by hand, determinism, exact resume, negative pairing."""

import numpy as np
import pytest

from sg_detr_jax.data import pipeline, targets

from conftest import tiny_config


def _cfg(data_dir):
  c = tiny_config()
  c.data.data_dir = data_dir
  c.data.max_video_clips = 75
  return c


def test_official_padding_tef_and_normaliser_by_hand():
  # 3 clips, multiple 4: TEF (0, 1/3), (1/3, 2/3), (2/3, 1); a 4th zero row marked valid; the span
  # normaliser is 4 clips.
  feats = np.ones((3, 2), np.float32)
  video, mask, num_real, num_valid = targets.layout_video(
      feats, max_clips=75, pad_to_multiple=4, padded_rows_valid=True, use_tef=True, static_len=8)
  np.testing.assert_allclose(video[:4, 2:], [[0, 1 / 3], [1 / 3, 2 / 3], [2 / 3, 1], [0, 0]])
  np.testing.assert_array_equal(video[3], 0)
  np.testing.assert_array_equal(mask, [1, 1, 1, 1, 0, 0, 0, 0])
  assert (num_real, num_valid) == (3, 4)
  _, mask, _, num_valid = targets.layout_video(
      feats, max_clips=75, pad_to_multiple=4, padded_rows_valid=False, use_tef=True, static_len=8)
  assert num_valid == 3 and mask.sum() == 3
  # QVHighlights: 75 clips -> 76, a window [12, 24] s normalised by 152 s.
  spans, smask = targets.span_targets(np.array([[12., 24.]]), 76 * 2.0, 10, None)
  np.testing.assert_allclose(spans[0], [18 / 152, 12 / 152], rtol=1e-6)
  assert smask.tolist() == [True] + [False] * 9


def test_qvh_pairs_by_hand():
  y = np.array([0, 5, 12, 3, 0, 0], np.float32)
  relevant = np.array([0, 1, 1, 1, 0, 0], bool)
  pos, neg = targets.saliency_pairs(y, relevant, 6, "qvh", np.random.default_rng(0))
  assert pos[0] == 2 and neg[0] == 3  # hard pair inside the moment
  assert pos[1] in (1, 2, 3) and neg[1] in (0, 4, 5)
  # Every clip relevant: the hard pair is reused.
  pos, neg = targets.saliency_pairs(y + 1, np.ones(6, bool), 6, "qvh", np.random.default_rng(0))
  assert pos.tolist() == [2, 2] and neg.tolist() == [0, 0]


def test_more_windows_than_cap_random_subset_in_training():
  windows = np.array([[2 * i, 2 * i + 2] for i in range(12)], float)
  spans, mask = targets.span_targets(windows, 100.0, 10, np.random.default_rng(1))
  assert mask.all() and len({tuple(s) for s in spans}) == 10


def test_batches_have_static_shapes(synthetic_tfds):
  c = _cfg(synthetic_tfds["data_dir"])
  ds, n = pipeline.train_dataset(c.data, 4, seed=0)
  b = ds[0]
  assert n == 48
  assert b["video"].shape == (4, 76, 34) and b["text"].shape == (4, 8, 24)
  assert b["spans"].shape == (4, 4, 2) and b["pos_idx"].shape == (4, 2)
  assert set(b["meta"]) == {"qid", "vid", "query", "source_vid"}


def test_seeded_determinism_and_exact_resume(synthetic_tfds):
  c = _cfg(synthetic_tfds["data_dir"])
  ds, _ = pipeline.train_dataset(c.data, 4, seed=7)
  it = iter(ds)
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(15)]  # crosses an epoch boundary (48 / 4 = 12)
  resumed = iter(pipeline.train_dataset(c.data, 4, seed=7)[0])
  resumed.set_state(state)
  for a in expected:
    b = next(resumed)
    for k in ("video", "spans", "pos_idx", "neg_idx"):
      np.testing.assert_array_equal(a[k], b[k])
  other = next(iter(pipeline.train_dataset(c.data, 4, seed=8)[0]))
  first = next(iter(pipeline.train_dataset(c.data, 4, seed=7)[0]))
  assert list(other["meta"]["qid"]) != list(first["meta"]["qid"])


def test_negative_pairs_exclude_same_source_video():
  from sg_detr_jax.losses.saliency import real_negatives

  ids = np.array([7, 7, 9, 11], np.int32)  # rows 0 and 1 share a source video
  # 0 -> 1 same source; 1 -> 2, 2 -> 3, 3 -> 0 (rolled) differ.
  assert np.asarray(real_negatives(ids, np.ones(4, bool))).tolist() == [False, True, True, True]
  # An eval batch padded with a copy of its last row: no pair involves a padding row.
  padded = np.array([7, 7, 9, 9], np.int32)
  mask = np.array([True, True, True, False])
  assert np.asarray(real_negatives(padded, mask)).tolist() == [False, True, False, False]
  # Two processes' local batches form one global batch: the pair across the boundary (row 1 of
  # the first with row 0 of the second) is judged on the global arrays, where the text is rolled:
  # a per-process roll would pair 5 with 3 and 7 with 5 and count both.
  local_a, local_b = np.array([3, 5], np.int32), np.array([5, 7], np.int32)
  glob = np.concatenate([local_a, local_b])
  assert np.asarray(real_negatives(glob, np.ones(4, bool))).tolist() == [True, False, True, True]


def test_source_id_is_a_stable_hash_of_the_source_video(synthetic_tfds):
  import zlib
  from sg_detr_jax.data.datasets import get_spec, source_video_id
  from conftest import tiny_train_config

  c = tiny_train_config(synthetic_tfds)
  ds, _ = pipeline.eval_dataset(c.data, "val", 4)
  batch = ds[0]
  spec = get_spec(c.data.dataset)
  for vid, sid in zip(batch["meta"]["vid"], batch["source_id"]):
    assert sid == zlib.crc32(source_video_id(vid, spec).encode()) & 0x7FFFFFFF


def test_eval_covers_every_query_once(synthetic_tfds):
  c = _cfg(synthetic_tfds["data_dir"])
  ds, meta = pipeline.eval_dataset(c.data, "val", 8)
  qids = [q for b in ds for q, m in zip(b["meta"]["qid"], b["batch_mask"]) if m]
  assert len(qids) == len(set(qids)) == 20


def test_dimension_mismatch_is_explained(synthetic_tfds):
  c = _cfg(synthetic_tfds["data_dir"])
  c.data.video_dim = 512
  with pytest.raises(ValueError, match="config.data.video_dim = 512.*has video_dim = 32"):
    pipeline.train_dataset(c.data, 4, seed=0)


def test_missing_dataset_is_explained(tmp_path):
  c = _cfg(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="data_prep.build_tfds"):
    pipeline.eval_dataset(c.data, "val", 4)
