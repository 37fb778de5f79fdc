"""Shared fixtures: the read-only reference data beside the repo, and a small synthetic dataset."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

# Tests compile many small programs and run each a few times: XLA's CPU backend at optimisation
# level 0 compiles the train step ~25% faster. Set before anything imports jax; subprocesses
# (the sharding check, launch.* runs) inherit it, so their results stay comparable.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # configs/ is imported as a package from the checkout
SHARED = os.environ.get("SG_DETR_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
QVH = os.path.join(SHARED, "reference", "qvhighlights")
# Feature widths of the tests' synthetic data (narrower than the real features: faster).
VIDEO_DIM, TEXT_DIM = 32, 24


@pytest.fixture(scope="session")
def qvh_reference():
  """Paths of the real QVHighlights files in ../shared (never copied into the repo)."""
  paths = {
      "train": os.path.join(QVH, "highlight_train_release.jsonl"),
      "val": os.path.join(QVH, "highlight_val_release.jsonl"),
      "preds": os.path.join(QVH, "sample_val_preds.jsonl"),
      "metrics": os.path.join(QVH, "sample_val_preds_metrics_raw.json"),
  }
  missing = [p for p in paths.values() if not os.path.isfile(p)]
  if missing:
    pytest.fail(f"reference data missing (set SG_DETR_SHARED to the shared/ folder): {missing}")
  return paths


@pytest.fixture(scope="session")
def synthetic_tfds(tmp_path_factory):
  """A small synthetic QVHighlights-format dataset, generated and built once per session.

  Returns:
    dict(raw=<generator output folder>, data_dir=<TFDS data dir>).
  """
  from data_prep import build_tfds, synthetic

  root = tmp_path_factory.mktemp("synthetic")
  raw = str(root / "raw")
  synthetic.generate(raw, num_train=48, num_val=20, seed=3, video_dim=VIDEO_DIM,
                     text_dim=TEXT_DIM)
  data_dir = str(root / "tfds")
  build_tfds.build("qvhighlights", [os.path.join(raw, "annotations")],
                   [os.path.join(raw, "video_features")], os.path.join(raw, "text_features"),
                   data_dir)
  return {"raw": raw, "data_dir": data_dir}


def tiny_config(config=None):
  """configs/tiny.py, or its sizes on `config` (e.g. an ablation row), with the feature widths of
  the tests' synthetic data (VIDEO_DIM x TEXT_DIM)."""
  from configs import tiny
  c = tiny.get_config() if config is None else tiny.shrink(config)
  c.data.video_dim, c.data.text_dim = VIDEO_DIM, TEXT_DIM
  return c


def tiny_train_config(data):
  """`tiny_config()` on the session's synthetic dataset, with a quick training recipe."""
  c = tiny_config()
  c.data.data_dir = data["data_dir"]
  c.data.gt_files.val = os.path.join(data["raw"], "annotations", "val.jsonl")
  c.train.eval_batch_size = 8
  c.optim.warmup_epochs = 0
  c.optim.milestones = ()
  c.optim.lr = 1e-3
  return c


@pytest.fixture(scope="session")
def trained(synthetic_tfds, tmp_path_factory):
  """Two epochs of the tiny config (12 steps each) with evaluation, in a fresh workdir (read-only
  for tests: copy it before changing anything)."""
  from sg_detr_jax.training.loop import train_and_evaluate
  c = tiny_train_config(synthetic_tfds)
  c.train.num_epochs = 2
  workdir = str(tmp_path_factory.mktemp("run"))
  metrics = train_and_evaluate(c, workdir, progress=False)
  return c, workdir, metrics


# Slow checks that run as scripts of tests/helpers/ (each writes its report to stdout, and its files
# to the output folder it is given) start when the session begins, each in its own process group:
# they use the second core while the rest of the suite, mostly one core of single-threaded XLA
# compiles, runs beside them. Their tests wait for them through `helper_output`, and run last
# (`pytest_collection_modifyitems`), so that no test waits while the other core has work left.
BACKGROUND = {}


def _waits_for_background(item) -> bool:
  """The test reads a background check's result (the kill-9 test: its killed run)."""
  return (item.nodeid.startswith(("tests/test_accelerator_check.py", "tests/test_sharding.py",
                                  "tests/test_golden_official.py"))
          or (item.nodeid.startswith("tests/test_multiprocess.py")
              and "report" in getattr(item, "fixturenames", ()))
          or "test_kill_9" in item.nodeid)


def pytest_collection_modifyitems(session, config, items):  # pylint: disable=unused-argument
  """The tests that wait for a background check go last, in their collected order."""
  waits = [item for item in items if _waits_for_background(item)]
  items[:] = [item for item in items if not _waits_for_background(item)] + waits


def _helper_cmd(script: str, out_dir: str) -> list[str]:
  return [sys.executable, os.path.join(REPO, "tests", "helpers", script), out_dir]


def _in_background(request, tmp_path_factory, name: str, script: str, wanted):
  """Generator body of a session fixture: starts `script` if a collected test `wanted(item)`."""
  if not any(wanted(item) for item in request.session.items):
    yield
    return
  out_dir = str(tmp_path_factory.mktemp(name))
  log = os.path.join(out_dir, "output.txt")
  with open(log, "w") as f:
    # Its own process group: a helper may start training processes of its own.
    proc = subprocess.Popen(_helper_cmd(script, out_dir), stdout=f, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    BACKGROUND[name] = (proc, log, out_dir)
    yield
    try:
      os.killpg(proc.pid, signal.SIGKILL)  # the helper and the processes it started
    except ProcessLookupError:
      pass
    proc.wait()


def helper_output(name: str, script: str, tmp_path_factory, timeout: float
                  ) -> tuple[str, int, str]:
  """(output, exit code, output folder) of tests/helpers/`script`: the run started with the
  session when there is one, else a run now (a test file run on its own)."""
  if name in BACKGROUND:
    proc, log, out_dir = BACKGROUND[name]
    proc.wait(timeout=timeout)
    with open(log) as f:
      return f.read(), proc.returncode, out_dir
  out_dir = str(tmp_path_factory.mktemp(name))
  proc = subprocess.run(_helper_cmd(script, out_dir), capture_output=True, text=True,
                        timeout=timeout, check=False)
  return proc.stdout + proc.stderr, proc.returncode, out_dir


def helper_report(name: str, script: str, tmp_path_factory, timeout: float) -> dict:
  """The JSON object a helper prints on its last "REPORT {...}" line (it must exit with 0)."""
  output, code, _ = helper_output(name, script, tmp_path_factory, timeout)
  assert code == 0, output[-6000:]
  line = [l for l in output.splitlines() if l.startswith("REPORT ")][-1]
  return json.loads(line[len("REPORT "):])


@pytest.fixture(scope="session", autouse=True)
def _sharding_check_in_background(request, tmp_path_factory):
  """tests/helpers/sharding_check.py (8 simulated devices, 8 compiles, ~4 min)."""
  yield from _in_background(request, tmp_path_factory, "sharding", "sharding_check.py",
                            lambda item: item.nodeid.startswith("tests/test_sharding.py"))


@pytest.fixture(scope="session", autouse=True)
def _multiprocess_check_in_background(request, tmp_path_factory):
  """tests/helpers/multiprocess_check.py (launch.train with 2 real processes against 1, resumes
  across process counts, a lost process; ~4-6 min, mostly compiles)."""
  yield from _in_background(
      request, tmp_path_factory, "multiprocess", "multiprocess_check.py",
      lambda item: (item.nodeid.startswith("tests/test_multiprocess.py")
                    and "report" in getattr(item, "fixturenames", ())))


@pytest.fixture(scope="session", autouse=True)
def _accelerator_check_in_background(request, tmp_path_factory):
  """tests/helpers/accelerator_check_quick.py (benchmarks/accelerator_check.sh --quick, ~2 min)."""
  yield from _in_background(request, tmp_path_factory, "accelerator", "accelerator_check_quick.py",
                            lambda item: item.nodeid.startswith("tests/test_accelerator_check.py"))


@pytest.fixture(scope="session", autouse=True)
def _golden_run_in_background(request, tmp_path_factory):
  """tests/helpers/golden_run.py (the official weights through our model, ~2 min of compiles)."""
  yield from _in_background(request, tmp_path_factory, "golden", "golden_run.py",
                            lambda item: item.nodeid.startswith("tests/test_golden_official.py"))


def overrides_for(config) -> list[str]:
  """--config.a.b=v overrides that turn configs/tiny.py into `config`."""
  from configs import tiny

  def walk(b, w, prefix):
    for k, v in w.items():
      if isinstance(v, dict):
        yield from walk(b[k], v, f"{prefix}{k}.")
      elif b[k] != v:
        yield f"--config.{prefix}{k}={v}"
  return list(walk(tiny.get_config().to_dict(), config.to_dict(), ""))


def _run_until_first_checkpoint_then_kill(cmd, workdir, result):
  """Runs `cmd`, sends SIGKILL as soon as the epoch-1 checkpoint (step 12) is complete."""
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  first = os.path.join(workdir, "checkpoints", "12")
  deadline = time.time() + 900
  while not os.path.isdir(first) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  _, err = proc.communicate()
  result.update(returncode=proc.returncode, stderr=err)


@pytest.fixture(scope="session", autouse=True)
def _interrupted_run_in_background(request, tmp_path_factory):
  """The first, killed half of tests/test_training.py::test_kill_9_..., started with the session
  (like the sharding check) on the `trained` fixture's configuration."""
  if not any("test_kill_9" in item.nodeid for item in request.session.items):
    yield
    return
  config = tiny_train_config(request.getfixturevalue("synthetic_tfds"))
  config.train.num_epochs = 2
  workdir = str(tmp_path_factory.mktemp("interrupted") / "w")
  cmd = [sys.executable, "-m", "launch.train", "--config", "configs/tiny.py", "--workdir", workdir,
         "--noprogress", *overrides_for(config)]
  result = {}
  thread = threading.Thread(target=_run_until_first_checkpoint_then_kill,
                            args=(cmd, workdir, result), daemon=True)
  thread.start()
  BACKGROUND["interrupted"] = (thread, result, cmd, workdir)
  yield
