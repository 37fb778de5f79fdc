"""The input pipeline: grain over a TFDS array_record data source, in-process, no TensorFlow.

Train: shuffle (seeded, reshuffled every epoch) -> repeat -> per-example targets with a per-example
RNG derived from the seed and the element index (so an iterator restored from its checkpointed
state replays exactly) -> fixed-shape batches with the rolled-text negative-pair mask.
Eval: file order, the last batch padded to the full batch size with `batch_mask` = 0.

A batch is a dict of numpy arrays (shapes below, B = batch size, Lv = static video length,
Lt = max text tokens, W = max windows) plus `meta` (host-only strings, never sent to the device):
  video [B, Lv, Dv(+2 TEF)] f32, video_mask [B, Lv] bool, text [B, Lt, Dt] f32, text_mask [B, Lt],
  spans [B, W, 2] (center, width) normalised, span_mask [B, W], saliency [B, Lv] dense label y,
  pos_idx / neg_idx [B, 2] i32, source_id [B] i32 (a hash of the source video: the loss pairs each
  row with the next row's text over the GLOBAL batch, `losses.saliency.real_negatives`), span_seconds [B] (normaliser, s), duration [B] (annotation duration, s), clip_len [B],
  num_clips [B] i32 (clips with features), batch_mask [B] bool,
  meta: {"qid", "vid", "query"} object arrays.
"""

from __future__ import annotations

from typing import Any

import grain
import numpy as np

from sg_detr_jax.data import targets
from sg_detr_jax.data.datasets import get_spec, source_id, source_video_id
from sg_detr_jax.data.tfds_source import open_split


def static_video_len(data_cfg) -> int:
  """The padded video length every batch has (e.g. 75 clips padded to a multiple of 4 -> 76)."""
  return targets.round_up(data_cfg.max_video_clips, data_cfg.pad_to_multiple)


def model_input_dims(data_cfg) -> tuple[int, int]:
  """(video input width incl. TEF, text input width) the model must accept."""
  return data_cfg.video_dim + (2 if data_cfg.use_tef else 0), data_cfg.text_dim


class ExampleProcessor:
  """Turns one stored example into fixed-shape arrays (see module docstring)."""

  def __init__(self, data_cfg, metadata: dict, train: bool):
    self.cfg = data_cfg
    self.spec = get_spec(data_cfg.dataset)
    self.train = train
    self.static_len = static_video_len(data_cfg)
    for key in ("video_dim", "text_dim"):
      if metadata.get(key) != data_cfg[key]:
        raise ValueError(
            f"config.data.{key} = {data_cfg[key]} but the dataset at {data_cfg.data_dir} has "
            f"{key} = {metadata.get(key)}; set --config.data.{key}={metadata.get(key)}")

  def __call__(self, ex: dict, rng: np.random.Generator | None = None) -> dict[str, Any]:
    cfg = self.cfg
    video, video_mask, num_real, num_valid = targets.layout_video(
        ex["video_features"], max_clips=cfg.max_video_clips, pad_to_multiple=cfg.pad_to_multiple,
        padded_rows_valid=cfg.padded_rows_valid, use_tef=cfg.use_tef, static_len=self.static_len)
    text, text_mask = targets.layout_text(ex["text_features"], cfg.max_text_tokens)
    clip_len = float(ex["clip_len"])
    span_seconds = num_valid * clip_len
    spans, span_mask = targets.span_targets(ex["windows"], span_seconds, cfg.max_windows,
                                            rng if self.train else None)
    y = np.zeros(self.static_len, np.float32)
    y[:num_real] = targets.saliency_label(ex["saliency"][:num_real], self.spec.label_kind)
    relevant = np.zeros(self.static_len, bool)
    relevant[:num_real] = ex["relevant"][:num_real]
    pos, neg = targets.saliency_pairs(y, relevant, num_real, self.spec.pair_rule,
                                      rng if self.train else None)
    vid = ex["vid"].decode()
    return {
        "video": video, "video_mask": video_mask, "text": text, "text_mask": text_mask,
        "spans": spans, "span_mask": span_mask, "saliency": y, "pos_idx": pos, "neg_idx": neg,
        "span_seconds": np.float32(span_seconds), "duration": np.float32(ex["duration"]),
        "clip_len": np.float32(clip_len), "num_clips": np.int32(num_real),
        "batch_mask": np.bool_(True),
        "source_id": np.int32(source_id(vid, self.spec)),
        "meta": {"qid": ex["qid"].decode(), "vid": vid, "query": ex["query"].decode(),
                 "source_vid": source_video_id(vid, self.spec)},
    }


def collate(examples: list[dict]) -> dict[str, Any]:
  """Stacks examples (numeric arrays) and their host-only `meta` strings."""
  batch = {k: np.stack([e[k] for e in examples]) for k in examples[0] if k != "meta"}
  batch["meta"] = {k: np.array([e["meta"][k] for e in examples], dtype=object)
                   for k in examples[0]["meta"]}
  return batch


def pad_batch(batch: dict[str, Any], batch_size: int) -> dict[str, Any]:
  """Pads a short (last) eval batch to `batch_size` by repeating its last row, batch_mask 0."""
  n = len(batch["batch_mask"])
  if n == batch_size:
    return batch
  idx = np.r_[np.arange(n), np.full(batch_size - n, n - 1)]
  out = {k: v[idx] for k, v in batch.items() if k != "meta"}
  out["meta"] = {k: v[idx] for k, v in batch["meta"].items()}
  out["batch_mask"][n:] = False
  return out


def device_arrays(batch: dict[str, Any]) -> dict[str, np.ndarray]:
  """The numeric part of a batch (everything but the host-only `meta`)."""
  return {k: v for k, v in batch.items() if k != "meta"}


def train_dataset(data_cfg, batch_size: int, seed: int, process_index: int = 0,
                  process_count: int = 1) -> tuple[grain.MapDataset, int]:
  """An endless, seeded stream of training batches and the number of examples of one epoch.

  The stream of GLOBAL batches (`batch_size` examples each) is the same whatever the process
  count: the split is shuffled (reshuffled every epoch) and repeated, and each element's targets
  use an RNG derived from its global index. Process `process_index` of `process_count` yields rows
  `[process_index * b, (process_index + 1) * b)` of every global batch, b = batch_size //
  process_count, so the processes together feed exactly the global batch (`sharding.shard_batch`
  concatenates their rows in process order), every example of an epoch is read by exactly one
  process, and an epoch whose size is not a multiple of the batch continues into the next one (no
  example is dropped). Only this process's rows are read and processed.

  Args:
    batch_size: the global batch size (divisible by `process_count`).

  Returns:
    (dataset of this process's batches, number of examples of the whole split).
  """
  if batch_size % process_count:
    raise ValueError(f"the batch size {batch_size} is not divisible by the {process_count} "
                     "processes")
  source, metadata = open_split(data_cfg.data_dir, data_cfg.dataset, data_cfg.train_split)
  processor = ExampleProcessor(data_cfg, metadata, train=True)
  ds = grain.MapDataset.source(source)
  num_examples = len(ds)
  if num_examples < batch_size:
    raise ValueError(f"the {data_cfg.train_split!r} split has {num_examples} examples, fewer "
                     f"than the batch size {batch_size}")
  local = batch_size // process_count
  ds = ds.shuffle(seed=seed).repeat(None).random_map(processor, seed=seed + 1)
  ds = ds.batch(local, drop_remainder=True, batch_fn=collate)
  if process_count > 1:
    # Global element g = step * batch_size + process_index * local + row: in chunks of `local`,
    # global step s is chunks s * process_count + 0 .. process_count - 1. grain's map datasets
    # are lazy, so the other processes' chunks are never read here.
    ds = ds[process_index::process_count]
  return ds, num_examples


def eval_view(data_cfg):
  """`data_cfg` as the evaluation sees it: `eval_data_dir` / `eval_dataset` replace `data_dir` /
  `dataset` when set (zero-shot evaluation on another dataset than the training one)."""
  if not data_cfg.get("eval_data_dir") and not data_cfg.get("eval_dataset"):
    return data_cfg
  view = data_cfg.copy_and_resolve_references()
  with view.unlocked():
    view.data_dir = data_cfg.eval_data_dir or data_cfg.data_dir
    view.dataset = data_cfg.eval_dataset or data_cfg.dataset
  return view


def eval_dataset(data_cfg, split: str, batch_size: int) -> tuple[grain.MapDataset, dict]:
  """Batches of a whole split in file order (last one padded) and the build metadata."""
  data_cfg = eval_view(data_cfg)
  source, metadata = open_split(data_cfg.data_dir, data_cfg.dataset, split)
  processor = ExampleProcessor(data_cfg, metadata, train=False)
  ds = (grain.MapDataset.source(source).map(processor)
        .batch(batch_size, batch_fn=collate).map(lambda b: pad_batch(b, batch_size)))
  return ds, metadata
