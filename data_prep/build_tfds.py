"""Build a TFDS (array_record) dataset from annotation files and feature folders.

  python -m data_prep.build_tfds --dataset qvhighlights --annotations data/qvh \
      --video-features feats/video --text-features feats/text --data-dir tfds_data

`--annotations` is a folder whose files name their split (`train.jsonl`, `val.jsonl`, `test.jsonl`,
or official names such as `highlight_val_release.jsonl`, `highlight_test_with_gt.jsonl`,
`charades_test_release.jsonl`, `tacos_train_release.jsonl`), or explicit `SPLIT=PATH` pairs.
`--video-features` may be given several times: the folders are concatenated along the feature axis.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from data_prep.annotations import AnnotationError, read_annotations
from data_prep.features import FeatureError, FeatureOptions
from sg_detr_jax.data.datasets import DATASETS, get_spec

_SPLIT_IN_NAME = re.compile(r"(test_with_gt|train|val|test)")


def discover_splits(annotations: list[str]) -> dict[str, str]:
  """Maps split name -> annotation file from a folder or from SPLIT=PATH pairs."""
  if len(annotations) == 1 and os.path.isdir(annotations[0]):
    folder = annotations[0]
    out = {}
    for name in sorted(os.listdir(folder)):
      if not name.endswith(".jsonl"):
        continue
      match = _SPLIT_IN_NAME.search(name[:-len(".jsonl")])
      if match is None:
        continue
      split = match.group(1)
      if split in out:
        raise ValueError(f"{folder}: both {os.path.basename(out[split])} and {name} look like "
                         f"the {split!r} split; pass SPLIT=PATH pairs instead")
      out[split] = os.path.join(folder, name)
    if not out:
      raise ValueError(f"{folder}: no *.jsonl file names a split (train/val/test)")
    return out
  out = {}
  for item in annotations:
    split, sep, path = item.partition("=")
    if not sep or not split or not path:
      raise ValueError(f"--annotations {item!r}: expected a folder or SPLIT=PATH")
    out[split] = path
  return out


LAYOUTS = ("auto", "moment_detr", "official")
# Text files of the official SG-DETR release: `{qid}.npz` with key `features`.
OFFICIAL_TEXT = ("{qid}.npz", "features")


def resolve_text_layout(layout: str, spec, text_dir: str, first_qid: str) -> tuple[str, str]:
  """(text file pattern, array key) of a feature layout; "auto" looks at the first query's file.

  Video files need no choice: `{vid}.npz`, `.npy` and `.pt` are all found (features.video_path).
  """
  if layout not in LAYOUTS:
    raise ValueError(f"--feature-layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
  md = (spec.text_pattern, spec.text_key)
  if layout != "auto":
    return OFFICIAL_TEXT if layout == "official" else md
  md_path = os.path.join(text_dir, md[0].format(qid=first_qid))
  official_path = os.path.join(text_dir, OFFICIAL_TEXT[0].format(qid=first_qid))
  if md_path == official_path and os.path.exists(md_path):  # one file name (TACoS): by the key
    import numpy as np  # pylint: disable=g-import-not-at-top
    with np.load(md_path, allow_pickle=False) as npz:
      return OFFICIAL_TEXT if OFFICIAL_TEXT[1] in npz.files and md[1] not in npz.files else md
  if os.path.exists(md_path):
    return md
  if os.path.exists(official_path):
    return OFFICIAL_TEXT
  return md  # neither exists: the build fails naming the expected file


def build(dataset: str, annotations: list[str], video_dirs: list[str], text_dir: str,
          data_dir: str, *, video_key: str = "features", text_key: str | None = None,
          text_pattern: str | None = None, normalize_video: bool = True,
          normalize_text: bool | None = None, skip_bad_records: bool = False,
          clip_windows_to_duration: bool = False, domain: str | None = None,
          overwrite: bool = False, feature_layout: str = "auto") -> tuple[str, dict]:
  """Builds the dataset; returns (its folder, the build report)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (slow import)

  from data_prep.tfds_builder import BuildSources, SgDetrFeatures  # pylint: disable=g-import-not-at-top

  spec = get_spec(dataset)
  splits = {split: read_annotations(path, spec, clip_windows_to_duration, domain)
            for split, path in discover_splits(annotations).items()}
  first_qid = next(iter(splits.values()))[0].qid
  layout_pattern, layout_key = resolve_text_layout(feature_layout, spec, text_dir, first_qid)
  opts = FeatureOptions(
      video_dirs=tuple(video_dirs), text_dir=text_dir, video_key=video_key,
      text_key=text_key or layout_key, text_pattern=text_pattern or layout_pattern,
      normalize_video=normalize_video,
      normalize_text=spec.normalize_text if normalize_text is None else normalize_text)
  builder = SgDetrFeatures(sources=BuildSources(spec, splits, opts, skip_bad_records),
                           data_dir=data_dir, file_format="array_record")
  if overwrite and os.path.isdir(builder.data_dir):
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(builder.data_dir)
  tfds.disable_progress_bar()
  builder.download_and_prepare()
  report = builder.report
  if report:  # empty when the dataset already existed and nothing was generated
    with open(os.path.join(builder.data_dir, "build_report.json"), "w") as f:
      json.dump(report, f, indent=2)
  return str(builder.data_dir), report


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
  p.add_argument("--annotations", required=True, nargs="+", help="folder, or SPLIT=PATH pairs")
  p.add_argument("--video-features", required=True, action="append", dest="video_dirs",
                 help="folder of {vid}.npz; repeat to concatenate several feature types")
  p.add_argument("--text-features", required=True, dest="text_dir")
  p.add_argument("--data-dir", required=True, help="TFDS data dir to write into")
  p.add_argument("--feature-layout", default="auto", choices=LAYOUTS,
                 help="moment_detr: {vid}.npz + qid{qid}.npz[last_hidden_state]; official (SG-DETR "
                      "release): {vid}.pt + {qid}.npz[features]; auto: from the first query's files")
  p.add_argument("--video-key", default="features")
  p.add_argument("--text-key", default=None, help="default: the dataset's convention")
  p.add_argument("--text-pattern", default=None, help="e.g. 'qid{qid}.npz' (dataset default)")
  p.add_argument("--no-normalize-video", action="store_true")
  p.add_argument("--no-normalize-text", action="store_true")
  p.add_argument("--skip-bad-records", action="store_true",
                 help="skip records with unusable features and list them in build_report.json")
  p.add_argument("--clip-windows-to-duration", action="store_true",
                 help="clamp windows ending past the video duration instead of failing")
  p.add_argument("--domain", default=None, help="TVSum / YouTube-HL: keep one domain")
  p.add_argument("--overwrite", action="store_true", help="rebuild an existing dataset")
  args = p.parse_args(argv)
  try:
    path, report = build(
        args.dataset, args.annotations, args.video_dirs, args.text_dir, args.data_dir,
        video_key=args.video_key, text_key=args.text_key, text_pattern=args.text_pattern,
        normalize_video=not args.no_normalize_video,
        normalize_text=False if args.no_normalize_text else None,
        skip_bad_records=args.skip_bad_records,
        clip_windows_to_duration=args.clip_windows_to_duration, domain=args.domain,
        overwrite=args.overwrite, feature_layout=args.feature_layout)
  except (AnnotationError, FeatureError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"built {path}")
  for split, counts in report.items():
    skipped = counts.get("skipped", 0)
    print(f"  {split}: {counts.get('written', 0)} examples, {skipped} skipped, "
          f"{counts.get('labels_beyond_features', 0)} labelled clips beyond the features")
  return 0


if __name__ == "__main__":
  sys.exit(main())
