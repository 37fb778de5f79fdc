"""Convert feature folders between the official SG-DETR release layout and the Moment-DETR layout.

  python -m data_prep.convert_features --from official --to moment_detr \
      --video-in release/video --text-in release/text --video-out feats/video --text-out feats/text

official:    {vid}.pt (torch.save'd tensor [T, D])   {qid}.npz     key "features"
moment_detr: {vid}.npz key "features"                qid{qid}.npz  key "last_hidden_state"

Arrays are copied unchanged (dtype and shape, including a leading [1, L, D] text batch axis), so a
round trip is bit-exact and, after one conversion to moment_detr, torch is no longer needed. Nothing
is normalised or cut here: that is the build's and the input pipeline's job, identically for both
layouts. `.pt` files are read with `torch.load(weights_only=True)` only.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import numpy as np

from data_prep.features import FeatureError, load_torch_tensor

LAYOUTS = {
    # layout: (video suffix, video npz key, text file regex -> qid, text name pattern, text key)
    "official": (".pt", None, re.compile(r"^(?!qid)(.+)\.npz$"), "{qid}.npz", "features"),
    "moment_detr": (".npz", "features", re.compile(r"^qid(.+)\.npz$"), "qid{qid}.npz",
                    "last_hidden_state"),
}


def _read_npz(path: str, key: str) -> np.ndarray:
  with np.load(path, allow_pickle=False) as npz:
    if key not in npz.files:
      raise FeatureError(f"{path}: no array {key!r}; it has {sorted(npz.files)}")
    return npz[key]


def _write_video(path: str, arr: np.ndarray, layout: str) -> None:
  if layout == "official":
    import torch  # pylint: disable=g-import-not-at-top  (optional extra)
    torch.save(torch.from_numpy(np.ascontiguousarray(arr)), path)
  else:
    np.savez(path, features=arr)


def convert(src: str, dst: str, video_in: str, text_in: str, video_out: str, text_out: str
            ) -> dict:
  """Converts every video and text file of the input folders; returns counts per kind."""
  if src not in LAYOUTS or dst not in LAYOUTS or src == dst:
    raise ValueError(f"--from {src!r} --to {dst!r}: expected two different layouts of "
                     f"{sorted(LAYOUTS)}")
  v_suffix, v_key, t_regex, _, t_key = LAYOUTS[src]
  dv_suffix, _, _, dt_pattern, dt_key = LAYOUTS[dst]
  os.makedirs(video_out, exist_ok=True)
  os.makedirs(text_out, exist_ok=True)
  counts = {"videos": 0, "texts": 0}
  for name in sorted(os.listdir(video_in)):
    if not name.endswith(v_suffix):
      continue
    path = os.path.join(video_in, name)
    arr = load_torch_tensor(path, "video features") if v_key is None else _read_npz(path, v_key)
    _write_video(os.path.join(video_out, name[:-len(v_suffix)] + dv_suffix), arr, dst)
    counts["videos"] += 1
  for name in sorted(os.listdir(text_in)):
    match = t_regex.match(name)
    if not match:
      continue
    arr = _read_npz(os.path.join(text_in, name), t_key)
    np.savez(os.path.join(text_out, dt_pattern.format(qid=match.group(1))), **{dt_key: arr})
    counts["texts"] += 1
  if not counts["videos"] or not counts["texts"]:
    raise FeatureError(f"no {src} files found: {counts['videos']} videos (*{v_suffix}) in "
                       f"{video_in}, {counts['texts']} texts in {text_in}")
  return counts


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--from", dest="src", required=True, choices=sorted(LAYOUTS))
  p.add_argument("--to", dest="dst", required=True, choices=sorted(LAYOUTS))
  for flag in ("--video-in", "--text-in", "--video-out", "--text-out"):
    p.add_argument(flag, required=True)
  args = p.parse_args(argv)
  try:
    counts = convert(args.src, args.dst, args.video_in, args.text_in, args.video_out, args.text_out)
  except (FeatureError, ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"converted {counts['videos']} video and {counts['texts']} text files "
        f"({args.src} -> {args.dst})")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
