"""Feature files: layout, normalisation, and a clear error for every unusable file."""

import numpy as np
import pytest

from data_prep.features import FeatureError, FeatureOptions, load_text, load_video


def _opts(tmp_path, **kw):
  (tmp_path / "v").mkdir(exist_ok=True)
  (tmp_path / "t").mkdir(exist_ok=True)
  return FeatureOptions(video_dirs=(str(tmp_path / "v"),), text_dir=str(tmp_path / "t"), **kw)


def test_normalisation_adds_eps_to_the_norm(tmp_path):
  opts = _opts(tmp_path)
  np.savez(tmp_path / "v" / "a.npz", features=np.array([[3., 4.], [0., 2.]], np.float16))
  np.testing.assert_allclose(load_video("a", opts), [[3 / 5.00001, 4 / 5.00001], [0, 2 / 2.00001]],
                             rtol=1e-6)


def test_several_video_folders_are_cut_and_concatenated(tmp_path):
  opts = _opts(tmp_path, normalize_video=False)
  (tmp_path / "w").mkdir()
  np.savez(tmp_path / "v" / "a.npz", features=np.ones((5, 2)))
  np.save(tmp_path / "w" / "a.npy", np.full((4, 3), 2.0))  # the .npy fallback
  opts = FeatureOptions(video_dirs=(str(tmp_path / "v"), str(tmp_path / "w")),
                        text_dir=opts.text_dir, normalize_video=False)
  out = load_video("a", opts)
  assert out.shape == (4, 5) and out[0, 0] == 1 and out[0, 4] == 2


def test_text_batch_axis_is_squeezed(tmp_path):
  opts = _opts(tmp_path, normalize_text=False)
  np.savez(tmp_path / "t" / "qid7.npz", last_hidden_state=np.ones((1, 6, 4)))
  assert load_text("7", opts).shape == (6, 4)


@pytest.mark.parametrize("write, pattern", [
    (lambda d: None, "missing file"),
    (lambda d: (d / "qid7.npz").write_bytes(b"PK\x03\x04garbage"), "unreadable or truncated"),
    (lambda d: np.savez(d / "qid7.npz", other=np.ones((2, 2))), "no array 'last_hidden_state'"),
    (lambda d: np.savez(d / "qid7.npz", last_hidden_state=np.ones((0, 4))), "empty"),
    (lambda d: np.savez(d / "qid7.npz", last_hidden_state=np.array([[1, np.nan]])), "NaN/Inf"),
    (lambda d: np.savez(d / "qid7.npz", last_hidden_state=np.ones(4)), "expected a \\[N, D\\]"),
])
def test_bad_text_file_names_file_and_query(tmp_path, write, pattern):
  opts = _opts(tmp_path)
  write(tmp_path / "t")
  with pytest.raises(FeatureError, match=pattern) as info:
    load_text("7", opts)
  assert "qid7.npz" in str(info.value) and "qid '7'" in str(info.value)


def test_truncated_npz(tmp_path):
  opts = _opts(tmp_path)
  np.savez(tmp_path / "v" / "a.npz", features=np.ones((50, 64)))
  data = (tmp_path / "v" / "a.npz").read_bytes()
  (tmp_path / "v" / "a.npz").write_bytes(data[: len(data) // 2])
  with pytest.raises(FeatureError, match="a.npz: unreadable or truncated.*vid 'a'"):
    load_video("a", opts)
