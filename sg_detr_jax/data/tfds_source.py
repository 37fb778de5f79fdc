"""Where `data_prep.build_tfds` writes a dataset, and how the pipeline opens it (no TensorFlow).

Layout: `{data_dir}/sg_detr_features/{dataset}/{version}/` (data_prep.build_tfds) or
`{data_dir}/{dataset}/{version}/` (builders of their own, e.g. InterVid-MR) with array_record shards, read through
`tfds.builder_from_directory(...).as_data_source(split)` (random access, no tf.data).
"""

from __future__ import annotations

import os

TFDS_NAME = "sg_detr_features"
TFDS_VERSION = "1.0.0"


def dataset_dir(data_dir: str, dataset: str) -> str:
  """The version folder of `dataset` under `data_dir` (or `data_dir` itself if it is one)."""
  if os.path.isfile(os.path.join(data_dir, "dataset_info.json")):
    return data_dir
  own = os.path.join(data_dir, dataset, TFDS_VERSION)
  if os.path.isfile(os.path.join(own, "dataset_info.json")):
    return own
  return os.path.join(data_dir, TFDS_NAME, dataset, TFDS_VERSION)


def open_builder(data_dir: str, dataset: str):
  """The read-only TFDS builder of a built dataset; a clear error if it was never built."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (slow import)

  path = dataset_dir(data_dir, dataset)
  if not os.path.isfile(os.path.join(path, "dataset_info.json")):
    raise FileNotFoundError(
        f"no built {dataset!r} dataset at {path}; build it with `python -m data_prep.build_tfds "
        f"--dataset {dataset} ... --data-dir {data_dir}`")
  return tfds.builder_from_directory(path)


def open_split(data_dir: str, dataset: str, split: str):
  """(random-access data source, build metadata dict) of one split."""
  builder = open_builder(data_dir, dataset)
  if split not in builder.info.splits:
    raise ValueError(f"{dataset!r} at {builder.data_dir} has no split {split!r}; it has "
                     f"{sorted(builder.info.splits)}")
  return builder.as_data_source(split), dict(builder.info.metadata)
