"""Per-dataset conventions: clip length, feature file names, label layout (reference.md §1-2).

One registry entry per supported dataset; the builder, the readers and the input pipeline all look
conventions up here instead of spreading `if dataset == ...` through the code.
"""

from __future__ import annotations

import dataclasses
import zlib


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Conventions of one dataset's public release.

  Attributes:
    name: registry key (also the TFDS builder config name).
    clip_len: seconds per feature step.
    text_pattern: file name of a query's text features; `{qid}` is substituted.
    text_key: array key inside the text `.npz`.
    normalize_text: L2-normalise text tokens (TVSum / YouTube-HL use them raw).
    num_annotators: columns of the per-clip saliency array.
    label_kind: how per-clip saliency is stored in the annotations:
      "qvh" (relevant_clip_ids + 0..4 triples), "windows" (binary from window overlap),
      "tvsum" (20 importance scores 1..5 per clip), "youtube" (0/1 per clip).
    pair_rule: how saliency pos/neg clip pairs are drawn ("qvh", "binary", "argmax").
    has_windows: whether the dataset has moment windows (MR) at all.
    qid_type: the JSON type of `qid` (int or str), restored when predictions are written.
    ori_vid_strip: trailing "_"-separated fields of `vid` to drop to get the source-video id
      (QVHighlights "{ytid}_{start}_{end}" -> 2).
  """
  name: str
  clip_len: float
  text_pattern: str
  text_key: str
  normalize_text: bool
  num_annotators: int
  label_kind: str
  pair_rule: str
  has_windows: bool
  qid_type: type
  ori_vid_strip: int = 0


DATASETS = {
    "qvhighlights": DatasetSpec("qvhighlights", 2.0, "qid{qid}.npz", "last_hidden_state", True, 3,
                                "qvh", "qvh", True, int, ori_vid_strip=2),
    # Pseudo-labelled pre-training data (data_prep.intervid_mr): QVHighlights conventions.
    "intervid_mr": DatasetSpec("intervid_mr", 2.0, "qid{qid}.npz", "last_hidden_state", True, 3,
                               "qvh", "qvh", True, int, ori_vid_strip=2),
    "charades_sta": DatasetSpec("charades_sta", 1.0, "qid{qid}.npz", "last_hidden_state", True, 1,
                                "windows", "binary", True, int),
    "tacos": DatasetSpec("tacos", 2.0, "{qid}.npz", "last_hidden_state", True, 1, "windows",
                         "binary", True, str),
    "youtube_hl": DatasetSpec("youtube_hl", 1.0, "{qid}.npz", "last_hidden_state", False, 1,
                              "youtube", "argmax", False, str),
    "tvsum": DatasetSpec("tvsum", 2.0, "{qid}.npz", "token", False, 20, "tvsum", "argmax", False,
                         str),
}


def get_spec(name: str) -> DatasetSpec:
  """The registry entry for `name`, or a ValueError listing the known datasets."""
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
  return DATASETS[name]


def source_video_id(vid: str, spec: DatasetSpec) -> str:
  """The id of the source video, used to exclude same-video negative text pairs.

  QVHighlights vids are "{youtube_id}_{start}_{end}" and the YouTube id may itself contain
  underscores, so the last `ori_vid_strip` fields are removed from the right.
  """
  if spec.ori_vid_strip == 0:
    return vid
  parts = vid.rsplit("_", spec.ori_vid_strip)
  return parts[0] if len(parts) == spec.ori_vid_strip + 1 else vid


def source_id(vid: str, spec: DatasetSpec) -> int:
  """A stable non-negative int32 hash (CRC-32) of `source_video_id`: the batch carries it to the
  device, where the negative pairs are decided over the global batch."""
  return zlib.crc32(source_video_id(vid, spec).encode()) & 0x7FFFFFFF
