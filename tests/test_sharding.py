"""Data-parallel sharding on simulated CPU devices (a separate process: the device count is fixed
when jax starts)."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def report():
  from conftest import BACKGROUND  # the module pytest loaded (not a second copy)
  if "sharding" in BACKGROUND:  # started with the session (tests/conftest.py)
    proc, out = BACKGROUND["sharding"]
    proc.wait(timeout=900)
    with open(out) as f:
      output, code = f.read(), proc.returncode
  else:
    proc = subprocess.run([sys.executable, os.path.join(HERE, "helpers", "sharding_check.py")],
                          capture_output=True, text=True, timeout=900, check=False)
    output, code = proc.stdout + proc.stderr, proc.returncode
  assert code == 0, output[-4000:]
  line = [l for l in output.splitlines() if l.startswith("REPORT ")][-1]
  return json.loads(line[len("REPORT "):])


def test_train_step_and_eval_agree_across_mesh_sizes(report):
  assert report["devices"] == 8
  runs = report["runs"]
  assert sorted(runs) == ["1", "2", "4", "8"]
  for n, run in runs.items():
    assert run["loss_diff"] <= 1e-5 * max(1.0, abs(runs["1"]["loss"])), (n, run)
    assert run["max_param_diff"] <= 1e-5, (n, run)
    assert run["max_pred_diff"] <= 1e-5, (n, run)
  assert "spec=P()" in runs["8"]["param_sharding"]  # parameters replicated


def test_checkpoint_from_8_devices_restores_on_one(report):
  assert report["restore"] == {"equal": True, "single_device": True}
