"""Several processes: the input slices of each process, and `launch.train --distributed` with 2
real processes (2 simulated CPU devices each, gloo collectives) against 1 process of 4 devices
(tests/helpers/multiprocess_check.py, started with the session by tests/conftest.py)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from sg_detr_jax.data import pipeline

HERE = os.path.dirname(os.path.abspath(__file__))


# -- the input slices (no training) --------------------------------------------------------------
def _qids(batch):
  return list(batch["meta"]["qid"])


@pytest.mark.parametrize("processes", [2, 5])
def test_processes_feed_exactly_the_global_batches(synthetic_tfds, processes):
  """48 examples, global batch 10: the processes' rows of every step, in process order, are the
  single-process batch, so every example of an epoch is read exactly once and by one process,
  including the last, partial batch of the epoch (8 examples, completed by the next epoch's)."""
  from conftest import tiny_train_config
  c = tiny_train_config(synthetic_tfds)
  single, n = pipeline.train_dataset(c.data, 10, seed=5)
  parts = [pipeline.train_dataset(c.data, 10, 5, i, processes) for i in range(processes)]
  assert n == 48 and all(num == 48 for _, num in parts)
  steps = 10  # two epochs: 100 rows
  order, owner = [], []
  for s in range(steps):
    rows = [ds[s] for ds, _ in parts]
    assert all(len(r["batch_mask"]) == 10 // processes for r in rows)
    merged = [q for r in rows for q in _qids(r)]
    assert merged == _qids(single[s])
    for i, r in enumerate(rows):  # the same arrays, not only the same queries
      np.testing.assert_array_equal(
          r["spans"], single[s]["spans"][i * len(r["spans"]):(i + 1) * len(r["spans"])])
    order += merged
    owner += [i for i, r in enumerate(rows) for _ in _qids(r)]
  epoch1, epoch2 = order[:48], order[48:96]
  assert len(set(epoch1)) == 48 and set(epoch1) == set(epoch2)  # each example once per epoch
  assert epoch1 != epoch2  # reshuffled
  assert len(set(order[40:48])) == 8 and set(order[40:48]) <= set(epoch1)  # the partial batch
  assert set(owner) == set(range(processes))


def test_processes_resume_from_the_global_step(synthetic_tfds):
  """The iterator state saved by one process count resumes under another: it is the step."""
  from conftest import tiny_train_config
  c = tiny_train_config(synthetic_tfds)
  single = iter(pipeline.train_dataset(c.data, 10, seed=5)[0])
  for _ in range(3):
    next(single)
  state = single.get_state()
  parts = [iter(pipeline.train_dataset(c.data, 10, 5, i, 2)[0]) for i in range(2)]
  for it in parts:
    it.set_state(state)
  assert [q for it in parts for q in _qids(next(it))] == _qids(next(single))


def test_batch_not_divisible_by_processes_is_explained(synthetic_tfds):
  from conftest import tiny_train_config
  c = tiny_train_config(synthetic_tfds)
  with pytest.raises(ValueError, match="batch size 10 is not divisible by the 4 processes"):
    pipeline.train_dataset(c.data, 10, 0, 0, 4)


# -- the distributed flags -----------------------------------------------------------------------
def test_distributed_options_read_the_environment(monkeypatch):
  from launch import distributed as distributed_lib
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "3")
  d = distributed_lib.Distributed().resolved()
  assert (d.coordinator, d.num_processes, d.process_id) == ("10.0.0.1:1234", 4, 3)
  d = distributed_lib.Distributed(coordinator="h:1", num_processes=2, process_id=0).resolved()
  assert (d.coordinator, d.num_processes, d.process_id) == ("h:1", 2, 0)  # flags win
  monkeypatch.setenv("JAX_PROCESS_ID", "x")
  with pytest.raises(ValueError, match="JAX_PROCESS_ID"):
    distributed_lib.Distributed().resolved()


def test_process_id_out_of_range_is_refused_before_connecting():
  from launch import distributed as distributed_lib
  with pytest.raises(ValueError, match="process id 2 is not in 0 .. 1"):
    distributed_lib.Distributed(coordinator="localhost:1", num_processes=2, process_id=2).initialize()


def test_train_flags_document_the_distributed_options():
  out = subprocess.run([sys.executable, "-m", "launch.train", "--helpfull"], capture_output=True,
                       text=True, cwd=os.path.dirname(HERE), timeout=120, check=False).stdout
  for flag in ("--coordinator", "--num_processes", "--process_id", "--init_timeout",
               "--heartbeat_timeout", "--shutdown_timeout"):
    assert flag in out


# -- 2 processes for real ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report(tmp_path_factory):
  from conftest import helper_report  # the module pytest loaded (not a second copy)
  return helper_report("multiprocess", "multiprocess_check.py", tmp_path_factory, 1800)


def _close(a, b, rel=1e-4):
  return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def test_two_processes_train_like_one_process_of_four_devices(report):
  r, m = report["runs"]["R"]["metrics"], report["runs"]["M"]["metrics"]
  assert sorted(r["train"]) == sorted(m["train"]) == [str(s) for s in range(1, 9)]
  for step, loss in r["train"].items():
    assert _close(loss, m["train"][step]), (step, loss, m["train"][step])
  assert report["runs"]["M"]["final_step"] == 8
  assert report["runs"]["M"]["max_param_diff_vs_R"] <= 1e-4


def test_two_processes_write_one_log_and_one_provenance(report):
  m = report["runs"]["M"]["metrics"]
  # Process 0 logs: each step once before the kill (steps after the step-4 checkpoint may be
  # logged again by the resumed run, which restarts from step 4).
  assert all(m["train_lines"][str(s)] == 1 for s in range(1, 5)), m["train_lines"]
  assert all(m["train_lines"][str(s)] <= 2 for s in range(5, 9)), m["train_lines"]
  # One entry per start (the run and its resume), by process 0, knowing both processes.
  assert report["runs"]["M"]["provenance"] == [2, 2]
  assert report["runs"]["R"]["provenance"] == [1]


def test_two_processes_evaluate_like_one(report):
  r, m = report["runs"]["R"], report["runs"]["M"]
  assert sorted(m["metrics"]["eval"]) == sorted(r["metrics"]["eval"]) == ["8"]
  for step, brief in r["metrics"]["eval"].items():
    for k, v in brief.items():
      assert abs(v - m["metrics"]["eval"][step][k]) <= 0.02, (step, k)
  for head in ("fused", "detr"):
    for k, v in r["val_metrics"][head]["brief"].items():
      assert abs(v - m["val_metrics"][head]["brief"][k]) <= 0.02, (head, k)


def test_two_processes_write_one_prediction_per_query(report):
  m = report["runs"]["M"]
  assert m["eval_files"] == ["val_metrics.json", "val_preds.jsonl", "val_preds_detr.jsonl"]
  assert sorted(m["pred_qids"]) == sorted(report["val_qids"])  # each once, none missing
  assert len(report["val_qids"]) == 10  # the last eval batch of 8 was padded


def test_checkpoints_move_between_process_counts_bit_for_bit(report):
  assert report["checkpoints"] == {"2_to_1": True, "1_to_2": True}


def test_lost_process_stops_the_others_with_an_error(report):
  lost = report["lost_process"]
  assert lost["killed_at_step_4"], lost
  assert lost["seconds_to_exit"] is not None, lost["survivor_log_tail"]  # no hang
  assert lost["survivor_exit"] != 0
  assert lost["named_processes"] == "1", lost["survivor_log_tail"]  # the lost one, by its id


def test_kill_9_of_both_processes_then_resume_ends_like_the_uninterrupted_run(report):
  """M was killed after its step-4 checkpoint and resumed with 2 processes: the same losses of
  steps 5-8 and the same final parameters as the uninterrupted run R."""
  m, r = report["runs"]["M"], report["runs"]["R"]
  assert m["final_step"] == 8
  for step in ("5", "6", "7", "8"):
    assert _close(m["metrics"]["train"][step], r["metrics"]["train"][step])
  assert m["max_param_diff_vs_R"] <= 1e-4


def test_sigterm_on_one_process_stops_both_at_the_same_step(report):
  """jax's preemption service turns SIGTERM into a notice (without `Preemption` the run went on to
  its end); the notice reaches the process that did not get the signal, and both stop after the
  same step, as the training loop does before saving that step."""
  p = report["preemption"]
  assert p["exit_codes"] == [0, 0], p
  stop0, stop1 = p["stopped_at"]
  assert stop0 is not None and stop0 == stop1 and stop0 > p["signalled_after_step"], p
  assert stop0 < 600 and p["seconds_to_exit"] < 60, p  # not the worker's step bound
