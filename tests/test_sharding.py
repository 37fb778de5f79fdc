"""Data-parallel sharding on simulated CPU devices (a separate process: the device count is fixed
when jax starts)."""

import pytest


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  from conftest import helper_report  # the module pytest loaded (not a second copy)
  return helper_report("sharding", "sharding_check.py", tmp_path_factory, 900)


def test_train_step_and_eval_agree_across_mesh_sizes(report):
  assert report["devices"] == 8
  runs = report["runs"]
  assert sorted(runs) == ["1", "8"]
  for n, run in runs.items():
    assert run["loss_diff"] <= 1e-5 * max(1.0, abs(runs["1"]["loss"])), (n, run)
    assert run["max_param_diff"] <= 1e-5, (n, run)
    assert run["max_pred_diff"] <= 1e-5, (n, run)
  assert "spec=P()" in runs["8"]["param_sharding"]  # parameters replicated


def test_checkpoint_from_8_devices_restores_on_one(report):
  assert report["restore"] == {"equal": True, "single_device": True}
