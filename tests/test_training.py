"""End to end on the tiny config: overfitting a batch, resume exactness, evaluation files, CLI."""

import json
import os

import jax
import numpy as np
import pytest

from launch import cli
from sg_detr_jax import jsonl
from sg_detr_jax.data.pipeline import device_arrays, train_dataset
from sg_detr_jax.training import steps as steps_lib
from sg_detr_jax.training.checkpoints import Checkpoints
from sg_detr_jax.training.loop import build
from tests.conftest import tiny_train_config


def test_overfits_one_batch(synthetic_tfds):
  c = tiny_train_config(synthetic_tfds)
  ds, n = train_dataset(c.data, c.train.batch_size, c.seed)
  batch = device_arrays(next(iter(ds)))
  graphdef, state, tx, schedule = build(c, n // c.train.batch_size)
  step = steps_lib.make_train_step(c, n // c.train.batch_size)
  key = jax.random.key(0, impl=c.train.prng_impl)
  losses = []
  for _ in range(20):
    state, m = step(state, batch, key)
    losses.append(float(m["loss"]))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-4:]) < 0.85 * np.mean(losses[:4]), losses


def test_steps_share_one_compile_across_fields_they_do_not_read(synthetic_tfds):
  # jit keys its cache on the static config's hash and equality: runs that differ only in the
  # schedule length, data folder, seed or logging reuse the compiled steps; model, loss and
  # optimizer changes do not.
  a = tiny_train_config(synthetic_tfds)
  b = tiny_train_config(synthetic_tfds)
  b.train.num_epochs, b.train.log_every_steps, b.seed = 7, 3, 11
  b.data.data_dir, b.postprocess.aux_nms_iou = "/elsewhere", 0.3
  assert steps_lib.step_config(a) == steps_lib.step_config(b)
  assert hash(steps_lib.step_config(a)) == hash(steps_lib.step_config(b))
  for field, value in (("model.ffn_dim", 48), ("loss.span", 3.0), ("optim.lr", 0.5),
                       ("data.video_dim", 7), ("mesh.data_axis", "batch")):
    c = tiny_train_config(synthetic_tfds)
    group, name = field.split(".")
    c[group][name] = value
    assert steps_lib.step_config(c) != steps_lib.step_config(a), field
  # A step config is a snapshot: changing the config afterwards changes neither it nor its hash
  # (the key jit's cache holds), so a step built from the changed config compiles anew.
  before = steps_lib.step_config(a)
  key = hash(before)
  a.model.ffn_dim = 48
  assert hash(before) == key and before.model.ffn_dim != 48
  assert steps_lib.step_config(a) != before


def test_training_writes_checkpoint_logs_and_metrics(trained):
  c, workdir, metrics = trained
  assert metrics is not None and "MR-full-mAP" in metrics["brief"]
  ckpts = Checkpoints(workdir)
  # The latest (24, for resuming) and the best epoch are kept, nothing else.
  assert ckpts.latest() == 24 and ckpts.best() in (12, 24)
  assert set(ckpts.steps()) == {24, ckpts.best()}
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert {l["split"] for l in lines} == {"train", "eval"}
  assert all(np.isfinite(l["loss"]) for l in lines if l["split"] == "train")
  assert os.listdir(os.path.join(workdir, "tensorboard"))


def test_evaluate_cli_writes_official_files(trained):
  from launch import evaluate
  c, workdir, _ = trained
  metrics = evaluate.run(c, workdir, "best", "val", quiet=True)
  preds = jsonl.read_jsonl(os.path.join(workdir, "eval", "val_preds.jsonl"))
  gt = jsonl.read_jsonl(c.data.gt_files.val)
  assert sorted(p["qid"] for p in preds) == sorted(g["qid"] for g in gt)
  by_qid = {g["qid"]: g for g in gt}
  pp = c.postprocess
  assert pp.convention == "official" and pp.fused  # the main file is the official fused list
  for p in preds:
    g = by_qid[p["qid"]]
    scores = [w[2] for w in p["pred_relevant_windows"]]
    assert scores == sorted(scores, reverse=True)
    # Official bounds: windows are clamped to the feature length (valid rows x 2 s, the padding
    # rows included) and to [0, clamp_max], and widened windows are not clamped again; an empty
    # fused list is written as one [0, 0, 0] row.
    num_real = min(round(g["duration"] / 2), c.data.max_video_clips)
    num_valid = -(-num_real // c.data.pad_to_multiple) * c.data.pad_to_multiple
    bound = min(num_valid * 2.0, pp.clamp_max) + pp.min_window / 2
    assert all(0 <= w[0] < w[1] <= bound or w == [0, 0, 0] for w in p["pred_relevant_windows"])
    assert len(p["pred_saliency_scores"]) == num_valid  # every valid row, as the official writer
  saved = json.load(open(os.path.join(workdir, "eval", "val_metrics.json")))
  assert saved["fused"]["brief"] == metrics["brief"] and "detr" in saved


def test_config_overrides_and_errors():
  """ml_collections' config_flags parser (the command line's, via launch.cli.load_config)."""
  from absl import flags
  c = cli.load_config("configs/tiny.py", ["--config.train.batch_size=8",
                                          "--config.optim.lr", "1e-3",
                                          "--config.model.proposal_widths=(0.1, 0.2, 0.3, 0.4)"])
  assert c.train.batch_size == 8 and c.optim.lr == 1e-3
  assert c.model.proposal_widths == (0.1, 0.2, 0.3, 0.4)
  assert c.is_locked
  with pytest.raises(KeyError, match="no field: 'batchsize'"):
    cli.load_config("configs/tiny.py", ["--config.train.batchsize=8"])
  with pytest.raises(KeyError, match="no field: 'nosuch'"):
    cli.load_config("configs/tiny.py", ["--config.nosuch.x=1"])
  with pytest.raises(flags.IllegalFlagValueError, match="batch_size=abc"):
    cli.load_config("configs/tiny.py", ["--config.train.batch_size=abc"])
  with pytest.raises(flags.IllegalFlagValueError, match="batch_size=1.5"):
    cli.load_config("configs/tiny.py", ["--config.train.batch_size=1.5"])
  with pytest.raises(OSError, match="nosuch.py"):
    cli.load_config("configs/nosuch.py")
  row_c = cli.load_config("configs/ablations/common.py:c")  # get_config("c")
  assert row_c.model.iou_head and not row_c.model.saliency_amplifier


def test_cli_flags_and_errors():
  """The absl command line: old argparse spellings still parse, bad overrides stop with the field
  named (no traceback), --help works without --config."""
  import subprocess
  import sys
  args = [sys.executable, "-c", "from launch import train, cli; import sys; "
          "from absl import flags; train.define_flags(); cli._parse_flags(sys.argv); "
          "f = flags.FLAGS; print(f.progress, f.workdir, f.config.seed, f.config.train.batch_size)"]
  for spelling in ("--no-progress", "--noprogress", "--progress=false"):
    out = subprocess.run([*args, "--config", "configs/tiny.py", "--workdir=w", spelling,
                          "--config.seed=3", "--config.train.batch_size", "5"],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "w", "3", "5"], (spelling, out)
  for override, message in (("--config.train.batchsize=3", 'no field: \'batchsize\''),
                            ("--config.train.batch_size=x", "batch_size=x")):
    r = subprocess.run([*args, "--config=configs/tiny.py", "--workdir=w", override],
                       capture_output=True, text=True)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
  r = subprocess.run([sys.executable, "-m", "launch.train", "--help"], capture_output=True,
                     text=True)  # absl exits with 1 after printing the help
  assert "--[no]progress" in r.stdout and "--config.a.b=v" in r.stdout, r.stderr


def test_preempted_command_exits_with_sigterm_status_and_says_how_to_resume():
  """launch.train's command line: a run that stopped on SIGTERM (`Preempted`, its checkpoint
  saved) exits with 143 = 128 + SIGTERM and one line, no traceback."""
  import subprocess
  import sys
  code = ("from launch import train, cli; from sg_detr_jax.training import preemption\n"
          "def run(*a, **k): raise preemption.Preempted(7, '/w/checkpoints')\n"
          "train.run = run; train.define_flags(); cli.run(train.main)")
  r = subprocess.run([sys.executable, "-c", code, "--config=configs/tiny.py", "--workdir=w"],
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 143, r.stderr
  assert "stopped at step 7" in r.stderr and "resume" in r.stderr
  assert "Traceback" not in r.stderr, r.stderr


def test_kill_9_mid_run_then_rerun_matches_the_uninterrupted_run(trained, tmp_path):
  """`kill -9` after the first epoch's checkpoint (with a half-written later checkpoint left
  behind, as a kill during a save leaves it), then the same run again: it resumes from the last
  complete checkpoint and ends bitwise where the uninterrupted run (`trained`) ended."""
  import signal
  from conftest import BACKGROUND, overrides_for  # the module pytest loaded
  c, ref_dir, _ = trained
  thread, result, cmd, workdir = BACKGROUND["interrupted"]  # started with the session
  assert cmd[cmd.index("--noprogress") + 1:] == overrides_for(c)  # the trained fixture's config
  thread.join(timeout=900)
  assert result["returncode"] == -signal.SIGKILL, result["stderr"][-3000:]
  assert Checkpoints(workdir).latest() == 12, "the run ended before it could be interrupted"
  # What a kill during orbax's save of step 24 leaves: an unfinished temporary directory.
  partial = os.path.join(workdir, "checkpoints", "24.orbax-checkpoint-tmp-1700000000000000")
  os.makedirs(os.path.join(partial, "state"))
  with open(os.path.join(partial, "state", "half_written"), "wb") as f:
    f.write(b"\0" * 100)
  # The same run again, through the function behind the command (in this process, so the
  # compiled steps of `trained` serve it: the killed process above was the separate one).
  from launch import train
  train.run(c, workdir, progress=False)

  ours, ref = Checkpoints(workdir), Checkpoints(ref_dir)
  assert ours.latest() == ref.latest() == 24
  ds, n = train_dataset(c.data, c.train.batch_size, c.seed)
  _, fresh, _, _ = build(c, n // c.train.batch_size)
  a, _ = ours.restore(24, fresh)
  b, _ = ref.restore(24, fresh)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # Same validation metrics at both epochs (the last record per step: a resumed run appends).
  evals = lambda d: {r["step"]: r for r in map(json.loads, open(os.path.join(d, "metrics.jsonl")))  # noqa: E731
                     if r["split"] == "eval"}
  assert evals(workdir) == evals(ref_dir) and sorted(evals(ref_dir)) == [12, 24]


def test_sigterm_saves_the_step_reached_and_the_rerun_ends_like_the_uninterrupted_run(
    trained, tmp_path, monkeypatch):
  """A real SIGTERM (a scheduler's preemption notice) in the middle of epoch 2: training stops
  after that step with a checkpoint of it, the SIGTERM handler is put back, and running again
  resumes mid-epoch and ends bitwise where the uninterrupted run (`trained`) ended."""
  import signal
  from sg_detr_jax.training import loop
  from sg_detr_jax.training.preemption import Preempted
  c, ref_dir, _ = trained
  workdir = str(tmp_path / "run")
  calls = []

  def arrays_then_notice(batch):  # the 15th batch: SIGTERM arrives while step 15 runs
    calls.append(1)
    if len(calls) == 15:
      os.kill(os.getpid(), signal.SIGTERM)
    return device_arrays(batch)

  late = []  # stands in for pytest's handler: a stray SIGTERM must not end the session
  previous = signal.signal(signal.SIGTERM, lambda *_: late.append(True))
  try:
    monkeypatch.setattr(loop, "device_arrays", arrays_then_notice)
    with pytest.raises(Preempted, match="stopped at step 15") as stop:
      loop.train_and_evaluate(c, workdir, progress=False)
    restored = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(loop, "device_arrays", device_arrays)
  finally:
    signal.signal(signal.SIGTERM, previous)
  assert not late and stop.value.step == 15
  assert restored.__name__ == "<lambda>"  # the handler in place before training, put back
  assert Checkpoints(workdir).latest() == 15 and 12 in Checkpoints(workdir).steps()

  loop.train_and_evaluate(c, workdir, progress=False)  # the same run again: resumes at 15
  ours, ref = Checkpoints(workdir), Checkpoints(ref_dir)
  assert ours.latest() == ref.latest() == 24
  ds, n = train_dataset(c.data, c.train.batch_size, c.seed)
  _, fresh, _, _ = build(c, n // c.train.batch_size)
  for x, y in zip(jax.tree_util.tree_leaves(ours.restore(24, fresh)[0]),
                  jax.tree_util.tree_leaves(ref.restore(24, fresh)[0])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  evals = lambda d: {r["step"]: r for r in map(json.loads, open(os.path.join(d, "metrics.jsonl")))  # noqa: E731
                     if r["split"] == "eval"}
  assert evals(workdir) == evals(ref_dir) and sorted(evals(ref_dir)) == [12, 24]
