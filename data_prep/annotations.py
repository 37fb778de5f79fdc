"""Readers for the annotation files of QVHighlights, Charades-STA, TACoS, YouTube-HL and TVSum.

Every record is validated against the format of reference.md §1; a bad record raises
`AnnotationError` naming the file, the line and the field. One `Annotation` per query.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Real

import numpy as np

from sg_detr_jax import jsonl
from sg_detr_jax.data.datasets import DatasetSpec


class AnnotationError(ValueError):
  """A malformed annotation record; the message names file, line and field."""


@dataclasses.dataclass
class Annotation:
  """One query, validated.

  Attributes:
    qid: the query id as a string (the JSON type is recorded in the dataset spec).
    vid: video id (feature file stem).
    query: query text (video title / domain for the HD-only datasets).
    duration: video length in seconds.
    windows: [n, 2] ground-truth moments in seconds; n = 0 for unlabelled test queries.
    relevant_clip_ids: [r] ids of clips with annotator scores (QVHighlights only, else empty).
    saliency_scores: [r, A] annotator scores of those clips (QVHighlights), or [n_clips, A] per-clip
      labels (TVSum: 1..5, YouTube-HL: 0/1); empty for window-only datasets.
    has_labels: False for test splits without ground truth.
    domain: TVSum / YouTube-HL domain ("" elsewhere).
    where: "file:line", for later error messages.
  """
  qid: str
  vid: str
  query: str
  duration: float
  windows: np.ndarray
  relevant_clip_ids: np.ndarray
  saliency_scores: np.ndarray
  has_labels: bool
  domain: str
  where: str


def _number(x) -> bool:
  return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x)


def parse_record(record: dict, spec: DatasetSpec, where: str,
                 clip_windows_to_duration: bool = False) -> Annotation:
  """Validates one JSON record and converts it to an `Annotation`.

  Args:
    record: the decoded JSON object.
    spec: the dataset's conventions.
    where: "file:line" for messages.
    clip_windows_to_duration: clamp windows that end past `duration` (a known quirk of some public
      Charades-STA annotations) instead of failing.

  Raises:
    AnnotationError: naming `where` and the field.
  """
  def fail(field, msg):
    raise AnnotationError(f"{where}: field '{field}': {msg}")

  for field in ("qid", "vid", "duration"):
    if record.get(field) is None:
      fail(field, "missing")
  qid, vid = record["qid"], record["vid"]
  if not isinstance(qid, (int, str)) or isinstance(qid, bool) or str(qid) == "":
    fail("qid", f"must be a non-empty int or string, got {qid!r}")
  if not isinstance(vid, str) or not vid:
    fail("vid", f"must be a non-empty string, got {vid!r}")
  query = record.get("query")
  if not isinstance(query, str) or not query.strip():
    fail("query", f"empty query text (qid {qid!r})")
  duration = record["duration"]
  if not _number(duration) or duration <= 0:
    fail("duration", f"must be a positive number, got {duration!r}")

  windows = np.zeros((0, 2), np.float64)
  clip_ids = np.zeros((0,), np.int64)
  scores = np.zeros((0, spec.num_annotators), np.float64)
  has_labels = True

  if spec.has_windows:
    raw = record.get("relevant_windows")
    if raw is None:
      has_labels = False  # an unlabelled test split (e.g. highlight_test_release.jsonl)
    else:
      if not isinstance(raw, list) or not raw:
        fail("relevant_windows", "must be a non-empty list of [start, end]")
      rows = []
      for i, w in enumerate(raw):
        if not isinstance(w, list) or len(w) != 2 or not all(_number(v) for v in w):
          fail("relevant_windows", f"window {i} must be [start, end] numbers, got {w!r}")
        st, ed = float(w[0]), float(w[1])
        if clip_windows_to_duration:
          ed = min(ed, float(duration))
        if not 0 <= st < ed <= duration:
          fail("relevant_windows", f"window {i} {w!r} is not inside [0, duration={duration}] "
               "with start < end")
        rows.append((st, ed))
      windows = np.asarray(rows, np.float64)

  if spec.label_kind == "qvh" and has_labels:
    ids, sal = record.get("relevant_clip_ids"), record.get("saliency_scores")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
      fail("relevant_clip_ids", "must be a non-empty list of ints")
    expected = sorted({c for st, ed in windows
                       for c in range(int(st / spec.clip_len), int(math.ceil(ed / spec.clip_len)))})
    if sorted(set(ids)) != expected or len(ids) != len(set(ids)):
      fail("relevant_clip_ids", f"{ids} are not the clips covered by relevant_windows "
           f"{windows.tolist()} (expected {expected})")
    if not isinstance(sal, list) or len(sal) != len(ids):
      fail("saliency_scores", f"must have one entry per relevant clip ({len(ids)})")
    for i, triple in enumerate(sal):
      if (not isinstance(triple, list) or len(triple) != spec.num_annotators
          or not all(isinstance(v, int) and 0 <= v <= 4 for v in triple)):
        fail("saliency_scores", f"entry {i} must be {spec.num_annotators} ints in 0..4, "
             f"got {triple!r}")
    clip_ids = np.asarray(ids, np.int64)
    scores = np.asarray(sal, np.float64)

  if spec.label_kind in ("tvsum", "youtube"):
    label = record.get("label")
    if label is not None:
      lo, hi = (1, 5) if spec.label_kind == "tvsum" else (0, 1)
      if (not isinstance(label, list) or not label
          or not all(isinstance(r, list) and len(r) == spec.num_annotators for r in label)):
        fail("label", f"must be a list of per-clip rows of {spec.num_annotators} values")
      arr = np.asarray(label, np.float64)
      if not np.all(np.isfinite(arr)) or arr.min() < lo or arr.max() > hi:
        fail("label", f"values must lie in {lo}..{hi}")
      scores = arr
    else:
      has_labels = False

  return Annotation(qid=str(qid), vid=vid, query=query, duration=float(duration),
                    windows=windows, relevant_clip_ids=clip_ids, saliency_scores=scores,
                    has_labels=has_labels, domain=str(record.get("domain") or ""), where=where)


def read_annotations(path: str, spec: DatasetSpec, clip_windows_to_duration: bool = False,
                     domain: str | None = None) -> list[Annotation]:
  """Reads and validates one annotation file.

  Args:
    path: JSON-lines file.
    spec: dataset conventions.
    clip_windows_to_duration: see `parse_record`.
    domain: keep only this domain (TVSum / YouTube-HL are trained per domain).

  Raises:
    AnnotationError: for a malformed record or a duplicated qid (both lines named).
  """
  out, first_line = [], {}
  for line_no, record in jsonl.iter_jsonl(path):
    ann = parse_record(record, spec, f"{path}:{line_no}", clip_windows_to_duration)
    if ann.qid in first_line:
      raise AnnotationError(f"{path}:{line_no}: field 'qid': duplicate qid {ann.qid!r} "
                            f"(first seen on line {first_line[ann.qid]})")
    first_line[ann.qid] = line_no
    if domain is None or ann.domain == domain:
      out.append(ann)
  if not out:
    raise AnnotationError(f"{path}: no records" + (f" of domain {domain!r}" if domain else ""))
  return out
