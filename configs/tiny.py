"""A tiny configuration for tests and smoke runs (small batches, short videos)."""

from configs import base


def get_config():
  c = base.get_config()
  c.seed = 0
  c.data.max_video_clips = 24
  c.data.max_text_tokens = 8
  c.data.max_windows = 4
  c.train.batch_size = 4
  c.train.eval_batch_size = 4
  c.train.num_epochs = 2
  # A narrow model: the architecture is unchanged, only widths shrink.
  c.model.d_model = 64
  c.model.ffn_dim = 128
  c.model.collab_size = 32  # fixed (tests build models without the training loop); >= the data needs
  # One layer per stack (two in the decoder, so per-layer losses and look-forward-twice still run):
  # every module is still there, and the train step compiles in about half the time.
  c.model.pooling_layers = 1
  c.model.sgca_layers = 1
  c.model.encoder_layers = 1
  c.model.decoder_layers = 2
  return c
