"""Deterministic synthetic moment-retrieval data in the real QVHighlights format.

  python -m data_prep.synthetic --out DIR [--num-train 1000 --num-val 250 --seed 0]

writes `DIR/annotations/{train,val}.jsonl`, `DIR/video_features/{vid}.npz` (key `features`, float16,
[T, video_dim]) and `DIR/text_features/qid{qid}.npz` (key `last_hidden_state`, [L, text_dim]).

The planted, learnable alignment:
* A vocabulary of subject and action words, each with a random text-space vector. A query concept is a
  (subject, action) pair; its text tokens are "[sos] a <subject> is <action> [eos]", built from the
  word vectors plus a sentence-level context vector (like contextual token outputs), plus noise.
* Every word also has a video-space vector that is only partly aligned with its text vector (cosine
  `alignment`), the rest a private random direction, so raw text-video cosine similarity is informative
  but imperfect, and a model that learns the projections can do much better.
* A video (120-150 s of 2-s clips) is a scene vector with per-clip noise and slow drift. Each of its
  queries plants its concept's video vector in 1-5 windows, with a per-clip strength that is also the
  annotators' saliency (3 noisy 0..4 grades). Distractor concepts sharing a subject or an action with a
  query are planted elsewhere, so "dog + running" must be told from "dog + eating".
"""

from __future__ import annotations

import argparse
import json
import os
import string

import numpy as np

SUBJECTS = ("man", "woman", "child", "dog", "cat", "chef", "crowd", "car", "bird", "player",
            "girl", "boy", "couple", "horse", "teacher", "singer")
ACTIONS = ("running", "cooking", "dancing", "swimming", "talking", "eating", "driving", "singing",
           "jumping", "reading", "painting", "laughing", "climbing", "sleeping", "playing",
           "walking")
FILLERS = ("[sos]", "a", "is", "[eos]")
CLIP_LEN = 2  # seconds, as QVHighlights


def _unit(x: np.ndarray) -> np.ndarray:
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


class _World:
  """Word vectors in text space and (partly aligned) video space."""

  def __init__(self, rng: np.random.Generator, text_dim: int, video_dim: int, alignment: float):
    words = SUBJECTS + ACTIONS + FILLERS
    self.text = {w: _unit(rng.standard_normal(text_dim)) for w in words}
    # The shared part lives in the same coordinates as the text vector (zero-padded or cut to
    # video_dim), so untrained cosine similarity sees it; the private part only a trained model can
    # learn to ignore.
    self.video = {}
    for w in SUBJECTS + ACTIONS:
      shared = np.zeros(video_dim)
      d = min(video_dim, text_dim)
      shared[:d] = self.text[w][:d]
      shared = _unit(shared)
      private = _unit(rng.standard_normal(video_dim))
      self.video[w] = _unit(alignment * shared + np.sqrt(1 - alignment ** 2) * private)

  def text_tokens(self, rng, subject: str, action: str, noise: float) -> np.ndarray:
    """[6, text_dim] token features of "[sos] a <subject> is <action> [eos]"."""
    sentence = _unit(self.text[subject] + self.text[action])
    tokens = ["[sos]", "a", subject, "is", action, "[eos]"]
    rows = []
    for tok in tokens:
      base = sentence if tok == "[eos]" else self.text[tok]
      rows.append(base + 0.5 * sentence + noise * rng.standard_normal(sentence.shape))
    return np.stack(rows).astype(np.float32)

  def concept_video(self, subject: str, action: str) -> np.ndarray:
    return _unit(self.video[subject] + self.video[action])


def _random_ytid(rng) -> str:
  alphabet = string.ascii_letters + string.digits + "-_"
  return "".join(rng.choice(list(alphabet), size=11))


def _place_windows(rng, num_clips: int, count: int, occupied: np.ndarray) -> list[tuple[int, int]]:
  """Non-overlapping windows (clip index ranges [s, e)) of QVHighlights-like lengths."""
  out = []
  for _ in range(count * 20):
    if len(out) == count:
      break
    # Length in clips: mostly short/middle, sometimes long (QVH median 16 s, p95 ~80 s).
    length = int(np.clip(np.round(rng.lognormal(np.log(7), 0.7)), 1, num_clips // 2))
    start = int(rng.integers(0, num_clips - length + 1))
    if occupied[max(0, start - 1):start + length + 1].any():
      continue
    occupied[start:start + length] = True
    out.append((start, start + length))
  return sorted(out)


def _strength_profile(rng, length: int) -> np.ndarray:
  """Per-clip saliency strength in (0.25, 1]: a bump in the window plus jitter."""
  x = np.linspace(-1, 1, length) if length > 1 else np.zeros(1)
  centre = rng.uniform(-0.5, 0.5)
  bump = np.exp(-((x - centre) ** 2) / 0.6)
  return np.clip(0.35 + 0.65 * bump + 0.15 * rng.standard_normal(length), 0.25, 1.0)


def generate(out: str, num_train: int = 1000, num_val: int = 250, seed: int = 0,
             video_dim: int = 512, text_dim: int = 512, alignment: float = 0.45,
             queries_per_video: tuple[int, int] = (2, 4), signal: float = 0.55,
             clip_noise: float = 0.6, text_noise: float = 0.4) -> dict:
  """Writes the dataset under `out`; returns a summary dict.

  Args:
    out: output folder.
    num_train, num_val: number of queries per split.
    seed: everything is a deterministic function of it.
    video_dim, text_dim: feature widths.
    alignment: cosine between a word's video vector and its mapped text vector.
    queries_per_video: inclusive range of queries sharing one video.
    signal: amplitude of a planted concept at saliency strength 1 (relative to the unit scene).
    clip_noise: per-clip noise amplitude.
    text_noise: per-token noise amplitude.
  """
  rng = np.random.default_rng(seed)
  world = _World(rng, text_dim, video_dim, alignment)
  concepts = [(s, a) for s in SUBJECTS for a in ACTIONS]
  for sub in ("annotations", "video_features", "text_features"):
    os.makedirs(os.path.join(out, sub), exist_ok=True)

  qid = 1000
  ytids = [_random_ytid(rng) for _ in range((num_train + num_val) // 4 + 2)]
  summary = {}
  for split, num_queries in (("train", num_train), ("val", num_val)):
    records = []
    while len(records) < num_queries:
      # Source videos are reused for a second 150-s clip sometimes, like QVHighlights.
      ytid = ytids[int(rng.integers(len(ytids)))]
      start = 30 * int(rng.integers(0, 40))
      vid = f"{ytid}_{start:.1f}_{start + 150:.1f}"
      if os.path.exists(os.path.join(out, "video_features", f"{vid}.npz")):
        continue
      duration = 150 if rng.random() < 0.9 else 2 * int(rng.integers(60, 75))
      num_clips = duration // CLIP_LEN
      n_q = min(int(rng.integers(queries_per_video[0], queries_per_video[1] + 1)),
                num_queries - len(records))
      picked = rng.choice(len(concepts), size=n_q + 2, replace=False)
      query_concepts = [concepts[i] for i in picked[:n_q]]
      # Distractors share a word with a query concept: same subject doing something else, etc.
      distractors = []
      for s, a in query_concepts[:2]:
        other_a = ACTIONS[int(rng.integers(len(ACTIONS)))]
        if (s, other_a) not in query_concepts:
          distractors.append((s, other_a))

      scene = _unit(rng.standard_normal(video_dim))
      # Slow drift (a random walk, ~0.04 per clip) and independent per-clip noise, both with norms
      # relative to the unit scene vector.
      drift = np.cumsum(rng.standard_normal((num_clips, video_dim)), axis=0) * 0.04 / np.sqrt(video_dim)
      noise = rng.standard_normal((num_clips, video_dim)) * clip_noise / np.sqrt(video_dim)
      video = scene + drift + noise
      occupied = np.zeros(num_clips, bool)
      planted = []
      for concept in query_concepts:
        count = int(rng.choice([1, 1, 1, 2, 2, 3, 4, 5]))
        windows = _place_windows(rng, num_clips, count, occupied)
        if not windows:
          continue
        strengths = [_strength_profile(rng, e - s) for s, e in windows]
        for (s, e), st in zip(windows, strengths):
          video[s:e] += signal * st[:, None] * world.concept_video(*concept)
        planted.append((concept, windows, strengths))
      for concept in distractors:
        for s, e in _place_windows(rng, num_clips, 1, occupied):
          video[s:e] += signal * 0.8 * world.concept_video(*concept)
      np.savez(os.path.join(out, "video_features", f"{vid}.npz"),
               features=video.astype(np.float16))

      for (subject, action), windows, strengths in planted:
        clip_ids, scores = [], []
        for (s, e), st in zip(windows, strengths):
          for c, strength in zip(range(s, e), st):
            grades = np.clip(np.round(4 * strength + 0.7 * rng.standard_normal(3)), 0, 4)
            clip_ids.append(c)
            scores.append([int(g) for g in grades])
        records.append({
            "qid": qid, "query": f"a {subject} is {action}", "duration": int(duration), "vid": vid,
            "relevant_clip_ids": clip_ids, "saliency_scores": scores,
            "relevant_windows": [[s * CLIP_LEN, e * CLIP_LEN] for s, e in windows]})
        np.savez(os.path.join(out, "text_features", f"qid{qid}.npz"),
                 last_hidden_state=world.text_tokens(rng, subject, action, text_noise))
        qid += 1
    with open(os.path.join(out, "annotations", f"{split}.jsonl"), "w") as f:
      for r in records:
        f.write(json.dumps(r) + "\n")
    summary[split] = {"queries": len(records), "videos": len({r["vid"] for r in records})}
  return summary


MEANINGLESS_CAPTIONS = ("the the the the the", "a black screen with white text", "ok",
                        "### 00:12 ###", "not sure what is happening here")


def _timestamp(seconds: float) -> str:
  """InternVid's "HH:MM:SS.mmm"."""
  ms = int(round(seconds * 1000))
  return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def generate_intervid(out: str, num_captions: int = 2000, seed: int = 0, video_dim: int = 512,
                      text_dim: int = 512, alignment: float = 0.45, signal: float = 0.55,
                      clip_noise: float = 0.8, text_noise: float = 0.4, pooled_noise: float = 0.3,
                      meaningless: float = 0.05, missing_video: float = 0.02) -> dict:
  """InterVid-like raw data in the same world (word vectors) as `generate(seed=seed)`.

  Writes `out/captions.jsonl` (InternVid-10M-FLT fields: YoutubeID, Start_timestamp,
  End_timestamp, Caption), `out/video_features/{ytid}.npz` (key `features`: clip embeddings of the
  WHOLE video, 200-450 s, noisier than the QVHighlights-like set) and
  `out/caption_features/qid{line}.npz` (`last_hidden_state` tokens and `pooled`, the caption
  embedding in the video space). Each caption's annotated interval is its planted window with
  scene-cut jitter (a few seconds off, not on the clip grid); a share of captions are meaningless
  (for the filter) or point at a video without features (counted as missing).
  """
  world = _World(np.random.default_rng(seed), text_dim, video_dim, alignment)
  rng = np.random.default_rng([seed, 17])  # a stream of its own: the world is shared, not the data
  concepts = [(s, a) for s in SUBJECTS for a in ACTIONS]
  for sub in ("video_features", "caption_features"):
    os.makedirs(os.path.join(out, sub), exist_ok=True)
  lines = []
  while len(lines) < num_captions:
    ytid = _random_ytid(rng)
    num_clips = int(rng.integers(100, 226))
    scene = _unit(rng.standard_normal(video_dim))
    drift = np.cumsum(rng.standard_normal((num_clips, video_dim)), axis=0) * 0.04 / np.sqrt(video_dim)
    video = scene + drift + rng.standard_normal((num_clips, video_dim)) * clip_noise / np.sqrt(video_dim)
    occupied = np.zeros(num_clips, bool)
    picked = rng.choice(len(concepts), size=int(rng.integers(2, 5)), replace=False)
    for ci in picked:
      windows = _place_windows(rng, num_clips, 1, occupied)
      if not windows or len(lines) >= num_captions:
        continue
      (s, e), = windows
      video[s:e] += signal * _strength_profile(rng, e - s)[:, None] * world.concept_video(*concepts[ci])
      qid = len(lines)
      start = max(0.0, s * CLIP_LEN - rng.uniform(0, 4))
      end = min(num_clips * CLIP_LEN, e * CLIP_LEN + rng.uniform(-1.5, 4))
      subject, action = concepts[ci]
      text = f"a {subject} is {action}"
      if rng.random() < meaningless:
        text = MEANINGLESS_CAPTIONS[int(rng.integers(len(MEANINGLESS_CAPTIONS)))]
      pooled = world.concept_video(subject, action) + pooled_noise * rng.standard_normal(video_dim) / np.sqrt(video_dim)
      np.savez(os.path.join(out, "caption_features", f"qid{qid}.npz"),
               last_hidden_state=world.text_tokens(rng, subject, action, text_noise),
               pooled=pooled.astype(np.float32))
      lines.append({"YoutubeID": ytid, "Start_timestamp": _timestamp(start),
                    "End_timestamp": _timestamp(max(end, start + 1.0)), "Caption": text})
    if rng.random() >= missing_video:
      np.savez(os.path.join(out, "video_features", f"{ytid}.npz"), features=video.astype(np.float16))
  with open(os.path.join(out, "captions.jsonl"), "w") as f:
    for line in lines:
      f.write(json.dumps(line) + "\n")
  return {"captions": len(lines), "videos": len({line["YoutubeID"] for line in lines})}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", required=True)
  p.add_argument("--intervid", type=int, default=0, metavar="N",
                 help="write N InterVid-like captions (whole videos, caption embeddings) instead")
  p.add_argument("--num-train", type=int, default=1000)
  p.add_argument("--num-val", type=int, default=250)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--video-dim", type=int, default=512)
  p.add_argument("--text-dim", type=int, default=512)
  args = p.parse_args(argv)
  if args.intervid:
    print(json.dumps(generate_intervid(args.out, args.intervid, args.seed, args.video_dim,
                                       args.text_dim)))
    return 0
  print(json.dumps(generate(args.out, args.num_train, args.num_val, args.seed, args.video_dim,
                            args.text_dim)))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
