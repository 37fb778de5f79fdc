"""Charades-STA (1-s clips, binary saliency from the windows; architecture.md §7 table).

  python -m data_prep.build_tfds --dataset charades_sta --annotations data/charades_sta/annotations \
      --video-features data/charades_sta/vid_features --text-features data/charades_sta/txt_features \
      --data-dir data/charades_sta/tfds
  python -m launch.train --config configs/charades_sta.py --workdir workdirs/charades_sta

Result: not measured here (needs the real features).
"""

from configs import base


def get_config():
  c = base.get_config()
  c.data.dataset = "charades_sta"
  c.data.data_dir = "data/charades_sta/tfds"
  c.data.eval_split = "test"
  c.data.gt_files.test = "data/charades_sta/annotations/charades_sta_test_tvr_format.jsonl"
  c.data.max_video_clips = 200
  c.model.prior_prob = 0.25
  c.model.atss_top_k = 18
  c.train.batch_size = 64
  c.train.num_epochs = 100
  c.train.best_metric = "MR-full-R1@0.5"
  # official: ModelCheckpoint monitors val/MR-R1-Full_0.5-COMB (configs/callbacks/charades.yaml)
  c.train.best_head = "fused"
  # Post-processing: the official run names configs/postprocessor/charades.yaml, which the official
  # repository does not contain. The preparator / combiner keep default.yaml's values; the window
  # clean-up is derived for 1-s clips and 200-clip videos (not official values).
  pp = c.postprocess
  pp.round_seconds = 1.0  # derived: the 1-s clip length
  pp.min_window = 1.0  # derived: one clip
  pp.clamp_max = 200.0  # derived: max_video_clips x 1 s
  pp.max_window = 200.0  # derived: as clamp_max
  pp.wbf_span_seconds = 200.0  # derived: as clamp_max
  # atss_seconds_per_unit stays 2.0: the official code hard-codes it for every dataset, so its
  # Charades ATSS windows are twice as long as their anchors in 1-s clips (set 1.0 to correct).
  c.optim.warmup_epochs = 20
  c.optim.milestones = (40, 50)
  return c
