"""Checkpoint retention and selection (orbax's preservation policy), asynchronous saves, parameter
loading, and the training-metric window mean. Small pytrees, no model: a few seconds."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from sg_detr_jax.training.checkpoints import CheckpointError, Checkpoints, load_params
from sg_detr_jax.training.logger import MetricLogger, WindowMean


def _state(step: int):
  return {"params": {"dense": {"kernel": jnp.full((3, 4), float(step))}},
          "opt_state": {"mu": jnp.zeros((3, 4))}, "step": jnp.asarray(step, jnp.int32)}


CONFIG = ml_collections.ConfigDict({"seed": 0})


def test_keeps_the_latest_and_the_best_scored_steps(tmp_path):
  ckpts = Checkpoints(str(tmp_path), keep_best=1)
  # (step, validation score or None for a save without evaluation)
  for step, score in [(1, 0.5), (2, None), (3, 0.7), (4, 0.6), (5, None)]:
    ckpts.save(step, _state(step), {"pos": step}, CONFIG, score)
  ckpts.close()
  ckpts = Checkpoints(str(tmp_path))  # a reader: the choices come from the files
  assert ckpts.steps() == [3, 5] and ckpts.latest() == 5 and ckpts.best() == 3
  assert ckpts.resolve("best") == 3 and ckpts.resolve("latest") == 5
  ckpts.close()


def test_unscored_steps_are_never_the_best(tmp_path):
  ckpts = Checkpoints(str(tmp_path), keep_best=2)
  ckpts.save(1, _state(1), {}, CONFIG)
  ckpts.save(2, _state(2), {}, CONFIG)
  assert ckpts.best() is None and ckpts.steps() == [1, 2]  # kept: no scored step to prefer
  with pytest.raises(FileNotFoundError, match="no evaluated checkpoint"):
    ckpts.resolve("best")
  ckpts.save(3, _state(3), {}, CONFIG, score=0.1)
  ckpts.save(4, _state(4), {}, CONFIG)
  ckpts.close()
  ckpts = Checkpoints(str(tmp_path))
  assert ckpts.steps() == [3, 4] and ckpts.best() == 3
  ckpts.close()
  # 'best' of load_params falls back to the latest only when nothing was evaluated.
  assert load_params(str(tmp_path), _state(0)["params"], "best")[0] == 3


def test_async_save_then_restore_in_the_same_process(tmp_path):
  """A save returns before the files are written; a restore waits for them, and the saved
  values are those at save time even when the arrays are donated right after."""
  bump = jax.jit(lambda s: jax.tree_util.tree_map(lambda x: x + 1, s), donate_argnums=0)
  state = _state(7)
  ckpts = Checkpoints(str(tmp_path))
  ckpts.save(7, state, {"pos": 7}, CONFIG, score=1.0)
  for _ in range(3):
    state = bump(state)
  restored, data = ckpts.restore(7, _state(0))
  ckpts.close()
  np.testing.assert_array_equal(restored["params"]["dense"]["kernel"], np.full((3, 4), 7.0))
  assert int(restored["step"]) == 7 and data == {"pos": 7}
  assert sorted(os.listdir(os.path.join(tmp_path, "checkpoints"))) == ["7"]  # no temporaries


def test_load_params_reads_only_the_params_and_checks_their_shapes(tmp_path):
  ckpts = Checkpoints(str(tmp_path))
  ckpts.save(2, _state(2), {}, CONFIG)
  ckpts.close()
  step, params = load_params(str(tmp_path), jax.eval_shape(lambda: _state(0)["params"]), "2")
  assert step == 2 and isinstance(params["dense"]["kernel"], jax.Array)
  np.testing.assert_array_equal(params["dense"]["kernel"], np.full((3, 4), 2.0))
  other = {"dense": {"kernel": jnp.zeros((3, 5))}}
  with pytest.raises(CheckpointError, match=r"shape \(3, 4\) in the checkpoint, \(3, 5\)"):
    load_params(str(tmp_path), other, "latest")
  with pytest.raises(FileNotFoundError, match="no evaluated checkpoint"):
    load_params(str(tmp_path), other, "best", best_falls_back=False)
  with pytest.raises(FileNotFoundError, match="not in"):
    load_params(str(tmp_path), other, "9")


def test_window_mean_averages_every_step_since_the_last_log():
  window = WindowMean()
  for i in range(4):
    window.add({"loss": jnp.float32(i), "lr": jnp.float32(10 * i)})
  assert window.result() == {"loss": 1.5, "lr": 30.0}  # lr: the window's last step
  window.add({"loss": jnp.float32(5), "lr": jnp.float32(0)})
  assert window.result()["loss"] == 5.0  # a new window
  for x in (1.0, float("nan"), 2.0):  # one bad step in the window is seen at the log step
    window.add({"loss": jnp.float32(x), "lr": jnp.float32(0)})
  assert np.isnan(window.result()["loss"])
  with pytest.raises(ValueError, match="no step"):
    window.result()


def test_metric_logger_writes_one_json_line_per_write(tmp_path):
  logger = MetricLogger(str(tmp_path))
  logger.write(3, "train", {"loss": 0.5})
  logger.write(3, "eval", {"MR-full-mAP": 12.5})
  logger.close()
  lines = open(os.path.join(tmp_path, "metrics.jsonl")).read().splitlines()
  assert lines == ['{"step": 3, "split": "train", "loss": 0.5}',
                   '{"step": 3, "split": "eval", "MR-full-mAP": 12.5}']
  assert os.listdir(os.path.join(tmp_path, "tensorboard"))
