"""Base configuration: every field of every run, one comment each. Dataset configs override it.

Nothing here is derived from other fields (step counts come from the dataset size at run time).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 40  # global seed: init, shuffling, dropout (official QVHighlights seed)

  # ---- data: a dataset built by `python -m data_prep.build_tfds` -------------------------------
  c.data = d = ml_collections.ConfigDict()
  d.dataset = "qvhighlights"  # registry key, see sg_detr_jax/data/datasets.py
  d.data_dir = ""  # the --data-dir given to data_prep.build_tfds
  d.train_split = "train"
  d.eval_split = "val"
  d.gt_files = ml_collections.ConfigDict({"val": "", "test": ""})  # split -> annotation jsonl
  d.video_dim = 512  # raw clip feature width in the dataset (before TEF)
  d.text_dim = 512  # token feature width
  d.max_video_clips = 75  # clips kept per video
  d.pad_to_multiple = 4  # pad each video to a multiple of the FPN's largest stride
  d.padded_rows_valid = True  # official SG-DETR marks those padding rows valid (architecture A12)
  d.use_tef = True  # append the 2 temporal-endpoint features
  d.max_text_tokens = 40  # tokens kept per query
  d.max_windows = 10  # ground-truth windows kept per query (random subset in training)

  # ---- training --------------------------------------------------------------------------------
  c.train = t = ml_collections.ConfigDict()
  t.batch_size = 128  # global batch
  t.num_epochs = 150
  t.eval_batch_size = 128

  # ---- optimiser -------------------------------------------------------------------------------
  c.optim = o = ml_collections.ConfigDict()
  o.lr = 5e-4  # AdamW peak learning rate
  o.weight_decay = 0.1
  return c
