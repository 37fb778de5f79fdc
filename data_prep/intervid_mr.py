"""InterVid-MR: moment-retrieval pseudo-labels from captioned intervals (architecture.md §8).

  python -m data_prep.intervid_mr --config configs/intervid_mr_labels.py \
      --captions internvid_flt.jsonl --video_features V --caption_features T --out OUT \
      [--workers 8 | --runner beam --beam_options "runner=DataflowRunner,..."] [--config.x=...]

Inputs:
* captions: JSON lines, either InternVid-10M-FLT's own fields (`YoutubeID`, `Start_timestamp` /
  `End_timestamp` as "HH:MM:SS.mmm", `Caption`) or (`vid`, `start`, `end` in seconds, `caption`).
  Line i (0-based) gets qid `first_qid + i`.
* `V/{youtube_id}.npz`, key `features`: [T, D] embeddings of the video's consecutive `clip_len`-s clips.
* `T/qid{qid}.npz`: `last_hidden_state` [L, Dt] caption tokens (the training text features) and
  `pooled` [D], the caption embedding in the clips' space (eq. 16 uses it).

Per caption (a pure function of its inputs, `label_caption`): filter the caption, trim a segment of at
most `max_segment_s` around its interval, score every clip by cosine similarity (eq. 16), threshold at
a statistic of the scores inside the interval (eq. 17), take maximal runs of clips at or above the
threshold as windows, grade each positive clip 1..4 (eq. 18). Output: OUT/annotations/train.jsonl in
the QVHighlights format (grades copied to 3 "annotators"), OUT/skipped.jsonl (one line per caption
that could not be labelled, with the reason), OUT/report.json (counts per reason) and the TFDS dataset
OUT/tfds/intervid_mr/1.0.0 that `configs/intervid_mr_pretrain.py` trains on. Nothing is dropped
silently: written + skipped = caption lines.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import os
import re

import numpy as np

SKIP_REASONS = (
    "filter_min_words", "filter_max_words", "filter_alpha_ratio", "filter_repeated_words",
    "filter_banned_pattern", "bad_record", "window_reversed", "window_outside_video",
    "interval_longer_than_segment", "missing_features", "bad_features", "no_positive_window")


class SkipCaption(Exception):
  """A caption that cannot be labelled; `reason` is one of SKIP_REASONS."""

  def __init__(self, reason: str, detail: str):
    assert reason in SKIP_REASONS, reason
    super().__init__(f"{reason}: {detail}")
    self.reason = reason
    self.detail = detail


@dataclasses.dataclass(frozen=True)
class Caption:
  """One caption line: qid, source video, text, annotated interval in seconds, `file:line`."""
  qid: int
  ytid: str
  text: str
  start: float
  end: float
  where: str


def parse_timestamp(value) -> float:
  """Seconds from a number or an "HH:MM:SS(.mmm)" / "MM:SS" string."""
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return float(value)
  if isinstance(value, str):
    parts = value.strip().split(":")
    if 1 <= len(parts) <= 3:
      try:
        return float(sum(float(p) * 60 ** i for i, p in enumerate(reversed(parts))))
      except ValueError:
        pass
  raise ValueError(f"not a timestamp: {value!r}")


def parse_caption(record: dict, qid: int, where: str) -> Caption:
  """A caption line in either supported field layout; SkipCaption("bad_record") otherwise."""
  ytid = record.get("YoutubeID", record.get("vid"))
  text = record.get("Caption", record.get("caption"))
  try:
    start = parse_timestamp(record.get("Start_timestamp", record.get("start")))
    end = parse_timestamp(record.get("End_timestamp", record.get("end")))
  except ValueError as e:
    raise SkipCaption("bad_record", f"{where}: {e}") from None
  if not isinstance(ytid, str) or not ytid or not isinstance(text, str):
    raise SkipCaption("bad_record", f"{where}: needs a video id and a caption string")
  return Caption(qid, ytid, text.strip(), start, end, where)


def filter_reason(text: str, rules) -> str | None:
  """The name of the first filtering rule `text` breaks, or None to keep it."""
  words = re.findall(r"[A-Za-z0-9']+", text.lower())
  if len(words) < rules.min_words:
    return "filter_min_words"
  if len(words) > rules.max_words:
    return "filter_max_words"
  chars = [ch for ch in text if not ch.isspace()]
  if sum(ch.isalpha() for ch in chars) < rules.min_alpha_ratio * len(chars):
    return "filter_alpha_ratio"
  if collections.Counter(words).most_common(1)[0][1] > rules.max_repeat_ratio * len(words):
    return "filter_repeated_words"
  if any(re.search(p, text, flags=re.IGNORECASE) for p in rules.banned_patterns):
    return "filter_banned_pattern"
  return None


def segment_clips(start: float, end: float, num_clips: int, cfg) -> tuple[int, int]:
  """Clip range [c0, c1) of the trimmed segment: at most `max_segment_s`, centred on the interval.

  The segment is shifted (not shrunk) at the video's ends and snapped to the clip grid so that it
  always covers the whole interval.
  """
  length = min(num_clips, int(cfg.max_segment_s // cfg.clip_len))
  first = math.floor(start / cfg.clip_len)
  last = math.ceil(end / cfg.clip_len)  # exclusive
  if last - first > length:
    raise SkipCaption("interval_longer_than_segment",
                      f"interval [{start}, {end}] spans {last - first} clips, the segment at most "
                      f"{length}")
  centre = (first + last) / 2
  c0 = int(min(max(0, math.floor(centre - length / 2)), num_clips - length))
  c0 = min(c0, first)  # the floor above may leave the interval's first clip out by one
  c0 = max(c0, last - length)
  return c0, c0 + length


def cosine_scores(clips: np.ndarray, caption: np.ndarray) -> np.ndarray:
  """Eq. 16: [T] cosine similarity of every clip embedding [T, D] with the caption embedding [D]."""
  clips = clips.astype(np.float64)
  caption = caption.astype(np.float64)
  norms = np.linalg.norm(clips, axis=1) * np.linalg.norm(caption)
  return clips @ caption / np.maximum(norms, 1e-12)


def inside_mask(start: float, end: float, c0: int, c1: int, cfg) -> np.ndarray:
  """[c1 - c0] bool: clips whose overlap with [start, end] exceeds `inside_fraction` of a clip.

  An interval shorter than that overlap on every clip marks the clip holding its midpoint.
  """
  lo = np.arange(c0, c1) * cfg.clip_len
  overlap = np.clip(np.minimum(lo + cfg.clip_len, end) - np.maximum(lo, start), 0, None)
  mask = overlap > cfg.inside_fraction * cfg.clip_len
  if not mask.any():
    mask[min(int((start + end) / 2 // cfg.clip_len) - c0, c1 - c0 - 1)] = True
  return mask


def threshold(inside: np.ndarray, cfg) -> float:
  """Eq. 17: the threshold from the scores S+ [n] of the clips inside the annotated interval."""
  rule = cfg.threshold_rule
  if rule == "mean_std":
    return float(inside.mean() - inside.std())
  if rule == "min":
    return float(inside.min())
  if rule == "mean":
    return float(inside.mean())
  if rule == "percentile":
    return float(np.percentile(inside, cfg.threshold_percentile))
  raise ValueError(f"threshold_rule {rule!r}: expected mean_std, min, mean or percentile")


def runs(mask: np.ndarray, min_len: int) -> list[tuple[int, int]]:
  """Maximal runs [s, e) of True in a 1-D bool array, at least `min_len` long."""
  padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
  edges = np.flatnonzero(np.diff(padded))
  return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2]) if e - s >= min_len]


def grades(scores: np.ndarray, inside: np.ndarray, cfg) -> np.ndarray:
  """Eq. 18: [n] grades 1..4 of the positive clips' scores [n].

  mu and sigma are those of S+ (the same statistics as the threshold), M the best positive score.
  """
  mu, sigma = float(inside.mean()), float(inside.std())
  if cfg.grade_rule == "equal_bins":
    low, top = mu - sigma, float(scores.max())
    if top - low < 1e-6:  # no spread (e.g. a one-clip interval): the limit of the bins is grade 4
      return np.full(scores.shape, 4, np.int64)
    g = np.ceil(4 * (scores - low) / (top - low + 1e-6))
  elif cfg.grade_rule == "sigma_cuts":
    g = 1 + (scores >= mu) + (scores >= mu + sigma) + (scores >= mu + 2 * sigma)
  else:
    raise ValueError(f"grade_rule {cfg.grade_rule!r}: expected equal_bins or sigma_cuts")
  return np.clip(g, 1, 4).astype(np.int64)


def label_caption(caption: Caption, clips: np.ndarray, pooled: np.ndarray, cfg) -> dict:
  """Labels one caption (pure: same inputs, same record).

  Args:
    caption: the parsed caption line.
    clips: [T, D] clip embeddings of its whole source video.
    pooled: [D] caption embedding in the same space.
    cfg: the labelling config (configs/intervid_mr_labels.py).

  Returns:
    A QVHighlights-format record for the trimmed segment (times relative to the segment start) with
    extra fields `segment` (clip range in the source video), `orig_window` and `threshold`.

  Raises:
    SkipCaption: with the reason when the caption cannot be labelled.
  """
  reason = filter_reason(caption.text, cfg.filter)
  if reason:
    raise SkipCaption(reason, f"{caption.where}: {caption.text!r}")
  if not caption.start < caption.end:
    raise SkipCaption("window_reversed", f"{caption.where}: [{caption.start}, {caption.end}]")
  num_clips = clips.shape[0]
  if caption.start < 0 or caption.end > num_clips * cfg.clip_len + 1e-6:
    raise SkipCaption("window_outside_video",
                      f"{caption.where}: [{caption.start}, {caption.end}] outside the "
                      f"{num_clips * cfg.clip_len:g} s of features of {caption.ytid!r}")
  if clips.ndim != 2 or pooled.shape != (clips.shape[1],):
    raise SkipCaption("bad_features", f"{caption.where}: clip features {clips.shape} and caption "
                      f"embedding {pooled.shape} are not in one space")
  c0, c1 = segment_clips(caption.start, caption.end, num_clips, cfg)
  scores = cosine_scores(clips[c0:c1], pooled)
  inside = inside_mask(caption.start, caption.end, c0, c1, cfg)
  tau = threshold(scores[inside], cfg)
  # ">=" rather than ">": with a one-clip interval sigma is 0 and "> mu" would reject its own clip.
  windows = runs(scores >= tau - 1e-9, cfg.min_window_clips)
  if not windows:
    raise SkipCaption("no_positive_window", f"{caption.where}: no run of >= "
                      f"{cfg.min_window_clips} clips at or above the threshold {tau:.4f}")
  clip_ids = [c for s, e in windows for c in range(s, e)]
  g = grades(scores[clip_ids], scores[inside], cfg)
  seg_start = c0 * cfg.clip_len
  return {
      "qid": caption.qid, "query": caption.text,
      "vid": f"{caption.ytid}_{seg_start:.1f}_{c1 * cfg.clip_len:.1f}",
      "duration": (c1 - c0) * cfg.clip_len,
      "relevant_windows": [[s * cfg.clip_len, e * cfg.clip_len] for s, e in windows],
      "relevant_clip_ids": clip_ids,
      "saliency_scores": [[int(x)] * cfg.num_annotators for x in g],
      "segment": [c0, c1],
      "orig_window": [round(caption.start - seg_start, 3), round(caption.end - seg_start, 3)],
      "threshold": round(tau, 6),
  }


@dataclasses.dataclass(frozen=True)
class LabelJob:
  """Everything a worker needs to label one caption line (picklable: process pools, Beam).

  Attributes:
    captions: the caption JSON-lines file.
    video_dir: folder of `{youtube_id}.npz` clip embeddings of whole videos.
    caption_dir: folder of per-caption `.npz` files (tokens + pooled embedding).
    cfg: the labelling config as a plain dict (configs/intervid_mr_labels.py).
  """
  captions: str
  video_dir: str
  caption_dir: str
  cfg: dict


class _Cfg:
  """Attribute access to a nested plain dict (ConfigDicts do not cross process boundaries well)."""

  def __init__(self, d: dict):
    for k, v in d.items():
      setattr(self, k, _Cfg(v) if isinstance(v, dict) else v)


def _load(path: str, key: str, what: str, where: str, vector: bool = False) -> np.ndarray:
  """A [N, D] matrix (or, with `vector`, a [D] / [1, D] vector as [D]) through the checks of
  data_prep.features; failures become SkipCaption with the file named."""
  from data_prep.features import FeatureError, load_array  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise SkipCaption("missing_features", f"{where}: {path}: missing file ({what})")
  try:
    if vector:
      arr = load_array(path, key, what, allow_vector=True)
      if arr.shape[0] != 1:
        raise FeatureError(f"{path}: {what} must be one vector, got shape {arr.shape}")
      return arr[0]
    return load_array(path, key, what)
  except FeatureError as e:
    raise SkipCaption("bad_features", f"{where}: {e}") from None


def process_caption(job: LabelJob, index: int, record: dict) -> dict:
  """Labels caption line `index` (0-based) and cuts its segment's features.

  Returns:
    {"qid", "record" (QVHighlights-format dict), "video" [n, D] raw segment clip embeddings,
    "text" [L, Dt] raw caption tokens} or, when it cannot be labelled, {"qid", "reason", "detail"}.
  """
  from data_prep.features import video_path  # pylint: disable=g-import-not-at-top
  cfg = _Cfg(job.cfg)
  qid = cfg.first_qid + index
  where = f"{job.captions}:{index + 1}"
  try:
    caption = parse_caption(record, qid, where)
    reason = filter_reason(caption.text, cfg.filter)
    if reason:  # before any file is read: most filtered captions have no features at all
      raise SkipCaption(reason, f"{where}: {caption.text!r}")
    clips = _load(video_path(job.video_dir, caption.ytid), cfg.video_key,
                  f"clip embeddings of video {caption.ytid!r}", where)
    cap_path = os.path.join(job.caption_dir, cfg.caption_pattern.format(qid=qid))
    tokens = _load(cap_path, cfg.text_key, f"caption tokens of qid {qid}", where)
    pooled = _load(cap_path, cfg.pooled_key, f"pooled caption embedding of qid {qid}", where,
                   vector=True)
    out = label_caption(caption, clips, pooled.reshape(-1), cfg)
  except SkipCaption as e:
    return {"qid": qid, "reason": e.reason, "detail": e.detail}
  c0, c1 = out["segment"]
  return {"qid": qid, "record": out, "video": clips[c0:c1], "text": tokens}


def run(cfg, captions: str, video_dir: str, caption_dir: str, out: str, runner: str = "local",
        workers: int = 1, beam_options: str = "", overwrite: bool = False) -> dict:
  """Labels every caption line and builds the TFDS dataset; returns the report (see module doc)."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (slow import)

  from data_prep import intervid_builder as ib  # pylint: disable=g-import-not-at-top  (TFDS)
  from sg_detr_jax import jsonl  # pylint: disable=g-import-not-at-top

  if runner not in ("local", "beam"):
    raise ValueError(f"runner {runner!r}: expected local or beam")
  records = jsonl.read_jsonl(captions)
  if not records:
    raise ValueError(f"{captions}: no caption lines")
  job = LabelJob(captions, video_dir, caption_dir, cfg.to_dict())
  # The feature widths of the dataset: from the first caption that can be labelled.
  probe = next((r for r in (process_caption(job, i, rec) for i, rec in
                            enumerate(records[:1000])) if "record" in r), None)
  if probe is None:
    raise ValueError(f"{captions}: none of the first {min(len(records), 1000)} captions can be "
                     f"labelled (e.g. {process_caption(job, 0, records[0])['detail']})")
  tfds_dir = os.path.join(out, "tfds")
  if overwrite and os.path.isdir(tfds_dir):
    shutil.rmtree(tfds_dir)
  builder = ib.InterVidMr(label=functools.partial(process_caption, job), labelling=job.cfg,
                          records=records, run=ib.RunOptions(out, runner, workers),
                          dims=(probe["video"].shape[1], probe["text"].shape[1]),
                          data_dir=tfds_dir, file_format="array_record")
  if os.path.isfile(os.path.join(builder.data_dir, "dataset_info.json")):
    raise FileExistsError(f"{builder.data_dir} exists; pass --overwrite to relabel")
  download_config = None
  if runner == "beam":
    beam = tfds.core.lazy_imports.apache_beam
    flags = [f"--{kv}" for kv in beam_options.split(",") if kv]
    download_config = tfds.download.DownloadConfig(
        beam_options=beam.options.pipeline_options.PipelineOptions(flags))
  tfds.disable_progress_bar()
  builder.download_and_prepare(download_config=download_config)
  return ib.finalize(out, len(records))


def define_flags() -> None:
  """The command line (defined only when this module is the program; see launch/cli.py)."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  from launch import cli  # pylint: disable=g-import-not-at-top

  cli.define_config("configs/intervid_mr_labels.py")
  flags.DEFINE_string("captions", None, "the captions' JSON lines (see above)")
  flags.DEFINE_string("video_features", None, "folder of {youtube_id}.npz clip embeddings")
  flags.DEFINE_string("caption_features", None, "folder of qid{qid}.npz caption features")
  flags.DEFINE_string("out", None, "output folder")
  flags.DEFINE_enum("runner", "local", ["local", "beam"], "local process pool or Apache Beam")
  flags.DEFINE_integer("workers", os.cpu_count() or 1, "local runner processes")
  flags.DEFINE_string("beam_options", "",
                      "comma-separated Beam pipeline options, e.g. runner=DataflowRunner,project=P")
  flags.DEFINE_bool("overwrite", False, "replace an existing OUT/tfds")
  flags.mark_flags_as_required(["captions", "video_features", "caption_features", "out"])


def main(argv) -> int:
  import json  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  from absl import flags  # pylint: disable=g-import-not-at-top

  from launch import cli  # pylint: disable=g-import-not-at-top

  cli.no_positional_args(argv)
  f = flags.FLAGS
  try:
    report = run(f.config, f.captions, f.video_features, f.caption_features, f.out, f.runner,
                 f.workers, f.beam_options, f.overwrite)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(report, indent=2))
  return 0


if __name__ == "__main__":
  from launch import cli as _cli  # pylint: disable=g-import-not-at-top
  define_flags()
  _cli.run(main)
