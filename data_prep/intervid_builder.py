"""TFDS builder of InterVid-MR: labels captions while writing the dataset.

The builder is given the per-caption function, `label(index, record)` (data_prep.intervid_mr binds
its `process_caption` to the labelling job and drives this builder), and runs it in one of two ways:
* local: a process pool (`workers`), results consumed in caption order;
* beam: `_generate_examples` returns an Apache Beam PTransform, so `download_and_prepare` runs the
  labelling inside the Beam pipeline (DirectRunner here; Dataflow / Flink / Spark through
  `beam_options`) and the annotations and skip list are written by the pipeline's workers.

Both write `{out}/annotations/train.jsonl` (QVHighlights format, sorted by qid), `{out}/skipped.jsonl`
(qid, reason, detail), `{out}/report.json` and the examples, in the layout and with the metadata
of `SgDetrFeatures` (dataset "intervid_mr"), under `{out}/tfds/intervid_mr/1.0.0`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import os
from typing import Callable

import numpy as np
import tensorflow_datasets as tfds

from data_prep.annotations import parse_record
from data_prep.features import l2_normalize
from data_prep.tfds_builder import example_features, make_example
from sg_detr_jax import jsonl
from sg_detr_jax.data.datasets import get_spec
from sg_detr_jax.data.tfds_source import TFDS_VERSION

DATASET = "intervid_mr"
_EPS = 1e-5  # as FeatureOptions: x / (||x|| + eps)
# (caption line index, its JSON record) -> {"qid", "record", "video", "text"} or, when the caption
# cannot be labelled, {"qid", "reason", "detail"}; picklable (process pools, Beam workers).
Label = Callable[[int, dict], dict]


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """How the labelling runs.

  Attributes:
    out: output folder (annotations, skip list, report, tfds/).
    runner: "local" (process pool) or "beam".
    workers: local processes; 0 or 1 labels in this process.
  """
  out: str
  runner: str = "local"
  workers: int = 1


def to_example(result: dict) -> tuple[str, dict]:
  """(key, TFDS example) of one labelled caption; features L2-normalised per row as every
  QVHighlights-format build is."""
  spec = get_spec(DATASET)
  rec = result["record"]
  ann = parse_record(rec, spec, f"qid {rec['qid']}")  # the same validation as any QVH-format file
  example, _ = make_example(ann, l2_normalize(result["video"], _EPS),
                            l2_normalize(result["text"], _EPS), spec)
  return ann.qid, example


def _annotation_line(result: dict) -> str:
  return json.dumps(result["record"])


def _skip_record(result: dict) -> dict:
  return {k: result[k] for k in ("qid", "reason", "detail")}


def _skip_line(result: dict) -> str:
  return json.dumps(_skip_record(result))


def _pool_results(label: Label, records: list[dict], workers: int):
  """`label` over every line, in order; a spawn pool because the parent may run JAX."""
  items = list(enumerate(records))
  if workers <= 1:
    for item in items:
      yield label(*item)
    return
  with multiprocessing.get_context("spawn").Pool(workers) as pool:
    yield from pool.starmap(label, items, chunksize=max(1, len(items) // (8 * workers)))


class InterVidMr(tfds.core.GeneratorBasedBuilder):
  """InterVid-MR pseudo-labelled moment retrieval (one `train` split)."""

  name = DATASET

  VERSION = tfds.core.Version(TFDS_VERSION)
  RELEASE_NOTES = {TFDS_VERSION: "Captions relabelled by clip-caption similarity (eq. 16-18)."}

  def __init__(self, *, label: Label, labelling: dict, records: list[dict], run: RunOptions,
               dims: tuple[int, int], **kwargs):
    """`label(index, record)`: the result of one caption line (see module doc); `labelling`: the
    labelling config as a plain dict, kept in the dataset's metadata."""
    self._label, self._labelling, self._records, self._run = label, labelling, records, run
    self._video_dim, self._text_dim = dims
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    spec = get_spec(DATASET)
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=example_features(self._video_dim, self._text_dim, spec.num_annotators),
        metadata=tfds.core.MetadataDict({
            "dataset": DATASET, "clip_len": spec.clip_len, "qid_type": spec.qid_type.__name__,
            "video_dim": self._video_dim, "text_dim": self._text_dim,
            "num_annotators": spec.num_annotators, "normalize_video": True,
            "normalize_text": True, "eps": _EPS, "video_key": self._labelling["video_key"],
            "text_key": self._labelling["text_key"], "num_video_dirs": 1,
            "labelling": self._labelling}))

  def _split_generators(self, dl_manager):
    del dl_manager  # local files
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    if self._run.runner == "beam":
      return _beam_transform(self._label, self._records, self._run.out)
    return self._local_examples()

  def _local_examples(self):
    labelled, skipped = [], []
    for result in _pool_results(self._label, self._records, self._run.workers):
      if "record" not in result:
        skipped.append(_skip_record(result))
        continue
      labelled.append(result["record"])
      yield to_example(result)
    jsonl.write_jsonl(os.path.join(self._run.out, "annotations", "train.jsonl"), labelled)
    jsonl.write_jsonl(os.path.join(self._run.out, "skipped.jsonl"), skipped)


def _beam_transform(label: Label, records: list[dict], out: str):
  """The labelling as a Beam PTransform: examples out, annotations and skips as text side outputs."""
  beam = tfds.core.lazy_imports.apache_beam

  class LabelCaptions(beam.PTransform):

    def expand(self, pbegin):
      results = (pbegin
                 | "Captions" >> beam.Create(list(enumerate(records)))
                 | "Reshuffle" >> beam.Reshuffle()  # spread the lines over workers
                 | "Label" >> beam.MapTuple(lambda i, r: label(i, r)))
      labelled = results | "Labelled" >> beam.Filter(lambda r: "record" in r)
      skipped = results | "Skipped" >> beam.Filter(lambda r: "record" not in r)
      for name, pcoll, fmt, path in (
          ("Annotations", labelled, _annotation_line, os.path.join(out, "annotations", "train")),
          ("SkipList", skipped, _skip_line, os.path.join(out, "skipped"))):
        _ = (pcoll | f"{name}Lines" >> beam.Map(fmt)
             | f"Write{name}" >> beam.io.WriteToText(path, file_name_suffix=".jsonl",
                                                    num_shards=1, shard_name_template=""))
      return labelled | "Examples" >> beam.Map(to_example)

  return LabelCaptions()


def finalize(out: str, num_captions: int) -> dict:
  """Sorts the annotation and skip files by qid (Beam writes them in any order), checks that every
  caption is accounted for and writes report.json."""
  records = {}
  for name, path in (("annotations", os.path.join(out, "annotations", "train.jsonl")),
                     ("skipped", os.path.join(out, "skipped.jsonl"))):
    records[name] = sorted(jsonl.read_jsonl(path) if os.path.getsize(path) else [],
                           key=lambda r: r["qid"])
    jsonl.write_jsonl(path, records[name])
  written = len(records["annotations"])
  reasons = collections.Counter(r["reason"] for r in records["skipped"])
  skipped = sum(reasons.values())
  if written + skipped != num_captions:
    raise RuntimeError(f"{out}: {written} labelled + {skipped} skipped != "
                       f"{num_captions} caption lines")
  windows = [len(r["relevant_windows"]) for r in records["annotations"]]
  report = {"captions": num_captions, "written": written, "skipped": skipped,
            "skipped_by_reason": dict(sorted(reasons.items())),
            "windows_per_sample": float(np.mean(windows)) if windows else 0.0}
  jsonl.write_json(os.path.join(out, "report.json"), report)
  return report
