"""TFDS builder: validated annotations + feature files -> one array_record example per query.

Stored per query (big tensors raw-bytes encoded): qid, vid, query, duration, clip length, video
features [T, Dv], text features [L, Dt], windows [n, 2] in seconds, per-clip saliency [T, A]
(QVHighlights: 3 annotators' 0..4; Charades-STA / TACoS: binary, a clip is positive when more than half
of it overlaps a window, as in the paper's training details; TVSum: 20 importance scores; YouTube-HL:
0/1), the relevant-clip mask [T] and the domain. Normalisation happens here (per the build options,
recorded in the dataset metadata); truncation, TEF and padding happen in the input pipeline.

The result is readable without this project: `tfds.builder_from_directory(d).as_data_source(split)`.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from data_prep.annotations import Annotation, AnnotationError
from data_prep.features import FeatureError, FeatureOptions, load_text, load_video
from sg_detr_jax.data.datasets import DATASETS, DatasetSpec
from sg_detr_jax.data.tfds_source import TFDS_VERSION


@dataclasses.dataclass
class BuildSources:
  """Everything one build reads.

  Attributes:
    spec: dataset conventions.
    splits: split name -> validated annotations.
    features: feature file options.
    skip_bad_records: skip (and report) records whose features are unusable instead of failing.
  """
  spec: DatasetSpec
  splits: dict[str, list[Annotation]]
  features: FeatureOptions
  skip_bad_records: bool = False


def clip_saliency(ann: Annotation, spec: DatasetSpec, num_clips: int) -> tuple[np.ndarray,
                                                                              np.ndarray, int]:
  """Per-clip saliency and relevance of one query.

  Args:
    ann: the annotation.
    spec: dataset conventions.
    num_clips: T, the number of feature rows.

  Returns:
    saliency [T, A] float32, relevant [T] bool, and the number of labelled clips that lie beyond the
    features (dropped; reported by the builder).
  """
  saliency = np.zeros((num_clips, spec.num_annotators), np.float32)
  relevant = np.zeros((num_clips,), bool)
  if not ann.has_labels:
    return saliency, relevant, 0
  dropped = 0
  if spec.label_kind == "qvh":
    inside = ann.relevant_clip_ids < num_clips
    dropped = int((~inside).sum())
    saliency[ann.relevant_clip_ids[inside]] = ann.saliency_scores[inside]
    relevant[ann.relevant_clip_ids[inside]] = True
  elif spec.label_kind == "windows":
    starts = np.arange(num_clips) * spec.clip_len
    overlap = np.zeros(num_clips)
    for st, ed in ann.windows:
      overlap = np.maximum(overlap, np.clip(np.minimum(starts + spec.clip_len, ed)
                                            - np.maximum(starts, st), 0, None))
    relevant = overlap > spec.clip_len / 2
    saliency[:, 0] = relevant
  else:  # per-clip label rows (TVSum, YouTube-HL); the builder already cut video and label alike
    n = min(num_clips, len(ann.saliency_scores))
    saliency[:n] = ann.saliency_scores[:n]
    relevant = (saliency > (1 if spec.label_kind == "tvsum" else 0)).any(axis=1)
  return saliency, relevant, dropped


def example_features(video_dim: int, text_dim: int, num_annotators: int):
  """The TFDS features of one query example (big tensors raw-bytes encoded)."""
  big = dict(dtype=np.float32, encoding=tfds.features.Encoding.BYTES)
  return tfds.features.FeaturesDict({
      "qid": tfds.features.Text(),
      "vid": tfds.features.Text(),
      "query": tfds.features.Text(),
      "domain": tfds.features.Text(),
      "duration": tfds.features.Scalar(np.float64),
      "clip_len": tfds.features.Scalar(np.float32),
      "has_labels": tfds.features.Scalar(np.bool_),
      "video_features": tfds.features.Tensor(shape=(None, video_dim), **big),
      "text_features": tfds.features.Tensor(shape=(None, text_dim), **big),
      "windows": tfds.features.Tensor(shape=(None, 2), dtype=np.float32),
      "saliency": tfds.features.Tensor(shape=(None, num_annotators), **big),
      "relevant": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
  })


def make_example(ann: Annotation, video: np.ndarray, text: np.ndarray, spec: DatasetSpec
                 ) -> tuple[dict, int]:
  """(the TFDS example of one query, number of its labelled clips beyond the features).

  Args:
    ann: the validated annotation.
    video: [T, Dv] prepared (normalised) clip features.
    text: [L, Dt] prepared token features.
    spec: dataset conventions.
  """
  if spec.label_kind in ("tvsum", "youtube") and ann.has_labels:
    # Reference behaviour: the video is cut to the label length when they differ.
    video = video[:len(ann.saliency_scores)]
  saliency, relevant, dropped = clip_saliency(ann, spec, len(video))
  return {
      "qid": ann.qid, "vid": ann.vid, "query": ann.query, "domain": ann.domain,
      "duration": ann.duration, "clip_len": spec.clip_len, "has_labels": ann.has_labels,
      "video_features": video, "text_features": text,
      "windows": ann.windows.astype(np.float32).reshape(-1, 2),
      "saliency": saliency, "relevant": relevant,
  }, dropped


class SgDetrFeatures(tfds.core.GeneratorBasedBuilder):
  """Moment-retrieval / highlight-detection features, one builder config per dataset."""

  VERSION = tfds.core.Version(TFDS_VERSION)
  RELEASE_NOTES = {TFDS_VERSION: "Queries with video/text features, windows and clip saliency."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in DATASETS]

  def __init__(self, *, sources: BuildSources, **kwargs):
    self._sources = sources
    self._report = collections.defaultdict(lambda: collections.Counter())
    self._skipped = collections.defaultdict(list)
    first = next(iter(sources.splits.values()))[0]
    self._video_dim = load_video(first.vid, sources.features).shape[1]
    self._text_dim = load_text(first.qid, sources.features).shape[1]
    super().__init__(config=sources.spec.name, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=example_features(self._video_dim, self._text_dim,
                                  self._sources.spec.num_annotators),
        metadata=tfds.core.MetadataDict(self.build_options()))

  def build_options(self) -> dict:
    """What the examples mean; stored in the dataset metadata for the input pipeline."""
    spec, f = self._sources.spec, self._sources.features
    return {"dataset": spec.name, "clip_len": spec.clip_len, "qid_type": spec.qid_type.__name__,
            "video_dim": int(self._video_dim), "text_dim": int(self._text_dim),
            "num_annotators": spec.num_annotators, "normalize_video": f.normalize_video,
            "normalize_text": f.normalize_text, "eps": f.eps, "video_key": f.video_key,
            "text_key": f.text_key, "num_video_dirs": len(f.video_dirs)}

  @property
  def report(self) -> dict:
    """Per split: counts of written / skipped examples and of dropped labels, plus skip reasons."""
    return {split: {**counts, "skipped_records": self._skipped[split]}
            for split, counts in self._report.items()}

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing is downloaded: the files are local
    return {split: self._generate_examples(split, anns)
            for split, anns in self._sources.splits.items()}

  def _generate_examples(self, split: str, anns: list[Annotation]):
    spec, opts = self._sources.spec, self._sources.features
    cache = collections.OrderedDict()  # small LRU: several queries share a video
    for ann in anns:
      try:
        if ann.vid not in cache:
          cache[ann.vid] = load_video(ann.vid, opts)
          if len(cache) > 64:
            cache.popitem(last=False)
        video = cache[ann.vid]
        text = load_text(ann.qid, opts)
        for arr, dim, what in ((video, self._video_dim, "video"), (text, self._text_dim, "text")):
          if arr.shape[1] != dim:
            raise FeatureError(f"{what} features of qid {ann.qid!r} (vid {ann.vid!r}) have "
                               f"dimension {arr.shape[1]}, expected {dim} like the first record")
      except (FeatureError, AnnotationError) as e:
        if not self._sources.skip_bad_records:
          raise FeatureError(f"{ann.where}: {e}") from None
        self._report[split]["skipped"] += 1
        self._skipped[split].append(f"{ann.where}: {e}")
        continue
      example, dropped = make_example(ann, video, text, spec)
      self._report[split]["written"] += 1
      self._report[split]["labels_beyond_features"] += dropped
      yield ann.qid, example
