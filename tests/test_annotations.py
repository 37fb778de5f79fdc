"""Annotation readers: the real QVHighlights files parse; every malformed record is located."""

import json

import numpy as np
import pytest

from data_prep.annotations import AnnotationError, read_annotations
from sg_detr_jax.data.datasets import get_spec, source_video_id

QVH = get_spec("qvhighlights")
GOOD = {"qid": 8663, "query": "a woman drinks a bottle of water", "duration": 126,
        "vid": "rsNuM2HcRh8_660.0_810.0", "relevant_clip_ids": [6, 7, 8, 9, 10, 11],
        "saliency_scores": [[3, 2, 1], [3, 3, 4], [3, 4, 4], [3, 4, 4], [3, 2, 4], [3, 2, 1]],
        "relevant_windows": [[12, 24]]}


def _write(tmp_path, records, name="val.jsonl"):
  path = tmp_path / name
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  return str(path)


def test_real_qvhighlights_files_parse(qvh_reference):
  train = read_annotations(qvh_reference["train"], QVH)
  val = read_annotations(qvh_reference["val"], QVH)
  assert (len(train), len(val)) == (7218, 1550)  # reference.md §1.1
  assert sum(len(a.windows) for a in val) == 2803
  assert all(a.has_labels for a in val)


def test_record_fields(tmp_path):
  (ann,) = read_annotations(_write(tmp_path, [GOOD]), QVH)
  assert ann.qid == "8663" and ann.duration == 126.0
  np.testing.assert_array_equal(ann.windows, [[12, 24]])
  assert ann.saliency_scores.shape == (6, 3)


def test_unlabelled_test_split(tmp_path):
  rec = {"qid": 3158, "query": "A video covering hill and water from a boat", "duration": 150,
         "vid": "_6hnl_BrFvs_360.0_510.0"}
  (ann,) = read_annotations(_write(tmp_path, [rec], "test.jsonl"), QVH)
  assert not ann.has_labels and ann.windows.shape == (0, 2)


@pytest.mark.parametrize("change, field", [
    ({"relevant_windows": [[12, 130]]}, "relevant_windows"),      # past duration 126
    ({"relevant_windows": [[24, 12]]}, "relevant_windows"),       # reversed
    ({"relevant_windows": [[-2, 12]]}, "relevant_windows"),
    ({"relevant_clip_ids": [6, 7, 8, 9, 10]}, "relevant_clip_ids"),
    ({"saliency_scores": [[3, 2, 5]] * 6}, "saliency_scores"),    # grade outside 0..4
    ({"saliency_scores": [[3, 2, 1]] * 5}, "saliency_scores"),
    ({"query": "  "}, "query"),
    ({"duration": 0}, "duration"),
    ({"vid": ""}, "vid"),
])
def test_bad_record_names_file_line_and_field(tmp_path, change, field):
  path = _write(tmp_path, [dict(GOOD, qid=1), {**GOOD, **change}])
  with pytest.raises(AnnotationError, match=rf"val\.jsonl:2: field '{field}'"):
    read_annotations(path, QVH)


def test_duplicate_qid(tmp_path):
  with pytest.raises(AnnotationError, match="duplicate qid '8663'.*line 1"):
    read_annotations(_write(tmp_path, [GOOD, GOOD]), QVH)


def test_charades_window_past_duration_can_be_clamped(tmp_path):
  rec = {"qid": 1, "query": "person eats it.", "duration": 17.46, "vid": "BFCU9",
         "relevant_windows": [[0.2, 18.0]]}
  path = _write(tmp_path, [rec])
  spec = get_spec("charades_sta")
  with pytest.raises(AnnotationError, match="relevant_windows"):
    read_annotations(path, spec)
  (ann,) = read_annotations(path, spec, clip_windows_to_duration=True)
  assert ann.windows[0, 1] == pytest.approx(17.46)


def test_unknown_dataset():
  with pytest.raises(ValueError, match="unknown dataset 'qvh'"):
    get_spec("qvh")


def test_source_video_id_keeps_underscores_in_youtube_id():
  assert source_video_id("_6hnl_BrFvs_360.0_510.0", QVH) == "_6hnl_BrFvs"
  assert source_video_id("BFCU9", get_spec("charades_sta")) == "BFCU9"
