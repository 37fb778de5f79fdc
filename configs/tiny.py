"""A tiny configuration for tests and smoke runs (small batches, short videos, a narrow model).

  python -m launch.train --config configs/tiny.py --workdir /tmp/tiny

Result: not measured (a smoke configuration; tests train it on a small synthetic dataset).
`shrink` puts the same sizes on any other config (the tests' ablation rows).
"""

from configs import base


def shrink(c):
  """The tiny sizes, in place, on a full config (returned): 24 clips, 8 text tokens, 4 windows,
  d_model 64, FFN 128, one layer per stack (two in the decoder). Feature widths are kept."""
  c.data.max_video_clips = 24
  c.data.max_text_tokens = 8
  c.data.max_windows = 4
  # A narrow model: the architecture is unchanged, only widths shrink.
  c.model.d_model = 64
  c.model.ffn_dim = 128
  # One layer per stack (two in the decoder, so per-layer losses and look-forward-twice still run):
  # every module is still there, and the train step compiles in about half the time.
  c.model.pooling_layers = 1
  c.model.sgca_layers = 1
  c.model.encoder_layers = 1
  c.model.decoder_layers = 2
  return c


def get_config():
  c = shrink(base.get_config())
  c.seed = 0
  c.train.batch_size = 4
  c.train.eval_batch_size = 4
  c.train.num_epochs = 2
  c.model.collab_size = 32  # fixed (tests build models without the training loop); >= the data needs
  return c
