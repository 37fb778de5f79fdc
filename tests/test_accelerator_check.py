"""benchmarks/accelerator_check.sh --quick: the one-command accelerator check, CPU-sized, so that
it keeps working between the runs on a GPU or TPU."""

import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_accelerator_check_quick_writes_one_json(tmp_path):
  out = tmp_path / "check.json"
  proc = subprocess.run([os.path.join(REPO, "benchmarks", "accelerator_check.sh"), "--quick",
                         f"--out={out}"], cwd=REPO, capture_output=True, text=True, timeout=900,
                        check=False, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  assert "backend cpu" in proc.stdout  # the devices are printed first
  result = json.loads(out.read_text())
  assert result["quick"] and result["backend"] == "cpu"
  assert sorted(result["scale"]) == ["float32/4"]
  for row in result["scale"].values():
    assert row["step_s"] > 0 and row["compile_s"] > 0 and row["infer_forward_s"] > 0
    assert row["step_flops"] > 0 and row["achieved_flops_per_s"] > 0
    assert row["mfu"] is None  # no peak for a CPU
  assert result["peak_memory"]
  training = result["training"]
  assert training["steps"] == 12 and training["loss_first"] > 0 and training["loss_last"] > 0
