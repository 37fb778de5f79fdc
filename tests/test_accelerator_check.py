"""benchmarks/accelerator_check.sh --quick: the one-command accelerator check, CPU-sized, so that
it keeps working between the runs on a GPU or TPU (tests/helpers/accelerator_check_quick.py, started
with the session by tests/conftest.py)."""

import json
import os


def test_accelerator_check_quick_writes_one_json(tmp_path_factory):
  from conftest import helper_output  # the module pytest loaded (not a second copy)
  output, code, out_dir = helper_output("accelerator", "accelerator_check_quick.py",
                                        tmp_path_factory, 1500)
  assert code == 0, output[-4000:]
  assert "backend cpu" in output  # the devices are printed first
  result = json.loads(open(os.path.join(out_dir, "check.json")).read())
  assert result["quick"] and result["backend"] == "cpu"
  assert sorted(result["scale"]) == ["float32/4"]
  for row in result["scale"].values():
    assert row["step_s"] > 0 and row["compile_s"] > 0 and row["infer_forward_s"] > 0
    # the host post-processing is on top of the forward
    assert row["forward_post_s"] > 0 and row["forward_post_queries_per_s"] > 0
    # consecutive batches, each post-processed behind the next one's forward
    assert row["stream_s"] > 0
    assert abs(row["stream_queries_per_s"] * row["stream_s"] - 4) < 1e-9
    assert 0 < row["matcher_share"] < 1  # the host Hungarian matcher's share of a step
    assert row["step_flops"] > 0 and row["achieved_flops_per_s"] > 0
    assert row["mfu"] is None  # no peak for a CPU
  assert result["peak_memory"]
  training = result["training"]
  assert training["steps"] == 12 and training["loss_first"] > 0 and training["loss_last"] > 0
