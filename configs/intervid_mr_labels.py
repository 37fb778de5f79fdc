"""InterVid-MR pseudo-labelling (architecture.md §8, eq. 16-18): every rule of data_prep.intervid_mr.

  python -m data_prep.intervid_mr --config configs/intervid_mr_labels.py --captions C.jsonl \
      --video_features V --caption_features T --out OUT [--config.threshold_rule=min]

Result, on synthetic captions (`python benchmarks/intervid_transfer.py --captions 2000
--pretrain-epochs 6 --finetune-epochs 3`, 2 CPU cores): 1,863 of 2,000 captions labelled in 13.7 s
(137 skipped: 43 boilerplate, 34 too short, 23 repeated words, 37 videos without features; 4.2
windows per sample). On the real InternVid captions: not measured here (needs the real features).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.clip_len = 2.0  # seconds per video-embedding row (InternVideo2 features of 2-s clips)
  c.max_segment_s = 150.0  # the trimmed segment around each caption's interval (QVHighlights length)
  c.first_qid = 0  # qid of the first caption line; qids follow the caption file's line order
  # Input files: {video_dir}/{youtube_id}.npz[video_key] = [T, D] clip embeddings of the whole video;
  # {caption_dir}/{caption_pattern}: [L, Dt] tokens (text_key) and the [D] caption embedding in the
  # clips' space (pooled_key, eq. 16).
  c.video_key = "features"
  c.caption_pattern = "qid{qid}.npz"
  c.text_key = "last_hidden_state"
  c.pooled_key = "pooled"

  # Caption filtering: a caption that breaks a rule is dropped and counted under that rule's name.
  c.filter = f = ml_collections.ConfigDict()
  f.min_words = 3  # "a man" says nothing a moment could be retrieved by
  f.max_words = 60
  f.min_alpha_ratio = 0.6  # letters / non-space characters: drops ids, timestamps, symbol noise
  f.max_repeat_ratio = 0.5  # share of the most frequent word: drops "the the the the"
  # Captioner boilerplate that describes no visual event (case-insensitive regular expressions).
  f.banned_patterns = (
      r"^\s*(a |an |the )?(black|white|blank|blurry) (screen|image|background|frame)",
      r"\b(no image|not sure|cannot see|can't see|unknown|lorem ipsum)\b",
      r"^\s*(a |an )?(screenshot|logo|title card|text) (of|on|with)\b",
  )

  # Eq. 17: threshold from the cosine scores S+ of the clips inside the annotated interval.
  c.threshold_rule = "mean_std"  # mean_std: mu - sigma | min | mean | percentile
  c.threshold_percentile = 25.0  # used by "percentile"
  c.inside_fraction = 0.5  # a clip is "inside" when more than this share of it overlaps the interval
  c.min_window_clips = 1  # runs of fewer positive clips are not windows
  # Eq. 18: grade 1..4 per positive clip. equal_bins: 4 equal bins of [mu - sigma, M];
  # sigma_cuts: cut-points mu - sigma, mu, mu + sigma (ignores M).
  c.grade_rule = "equal_bins"
  c.num_annotators = 3  # identical grade copies, so sums span QVHighlights' 3..12 scale
  return c
