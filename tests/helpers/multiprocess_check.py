"""Several processes for real, on one machine: `launch.train --distributed` with 2 processes of 2
simulated CPU devices each (gloo collectives) against 1 process of 4 devices, on the tiny config
and a small synthetic dataset. Prints a JSON report; tests/test_multiprocess.py asserts on it.

  python tests/helpers/multiprocess_check.py OUT_DIR

Runs (every workdir under OUT_DIR):
  R  1 process x 4 devices, 8 steps (2 epochs of 4 steps; 18 examples at batch 4, so each epoch's
     last batch is completed by the next epoch's examples), validation at the end (10 queries:
     the last eval batch of 8 is padded).
  M  2 processes x 2 devices, the same, with a heartbeat timeout of 30 s: process 1 is killed
     (SIGKILL) as soon as the step-4 checkpoint exists; process 0 must stop with an error, not
     hang (it is killed with SIGKILL after 6 heartbeat timeouts otherwise: kill -9 of both). Then
     M is resumed with 2 processes and must end where R ends. R and M run side by side.
  C  checkpoint round trips without training (`--ckpt_worker`): a state saved by 2 processes is
     restored in 1 process, and one saved by 1 process restored in 2, compared bit for bit with
     the arrays the writers held.
  P  preemption without training (`--preempt_worker`): 2 processes step in lockstep (a
     cross-process barrier per step) asking `training.preemption.Preemption` after every step, as
     the training loop does; process 1 alone gets SIGTERM. Both must stop at the same step,
     within seconds, and exit normally.
(The train step holds a host callback, the Hungarian matcher, so jax's persistent compilation
cache does not keep it: every training run compiles, which is most of the time here.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

NUM_TRAIN, NUM_VAL, DIMS = 18, 10, (32, 24)
# Seconds: launch.train's default. The lost-process run must fail well within the test's time, but
# the timeout must not fire while the processes are merely starved: CI runs this beside the whole
# suite on 2 cores, where a 10-s and later a 30-s timeout stopped a healthy run before the kill
# (the coordination service declared both processes unhealthy: its own process was starved too).
HEARTBEAT = 60


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def overrides(data_root: str) -> list[str]:
  return [
      f"--config.data.video_dim={DIMS[0]}", f"--config.data.text_dim={DIMS[1]}",
      f"--config.data.data_dir={data_root}/tfds",
      f"--config.data.gt_files.val={data_root}/raw/annotations/val.jsonl",
      "--config.train.eval_batch_size=8", "--config.train.log_every_steps=1",
      # One validation, at the end: the killed run never evaluates, so its processes skip the
      # predict step's compile (most of a tiny run's time is compiles).
      "--config.train.eval_every_epochs=2",
      "--config.optim.warmup_epochs=0", "--config.optim.milestones=()", "--config.optim.lr=1e-3",
      "--config.model.decoder_layers=1",  # half the compile time; every module is still there
  ]


def env_for(devices: int) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={devices}").strip()
  return env


def start(cmd_tail: list[str], workdir: str, processes: int, devices: int,
          extra: tuple[str, ...] = (), log_suffix: str = "") -> list[subprocess.Popen]:
  """Starts the processes of one run (logs in <workdir>.p<i>.log)."""
  port = free_port()
  procs = []
  for i in range(processes):
    dist = ([] if processes == 1 else
            ["--distributed", f"--coordinator=localhost:{port}", f"--num_processes={processes}",
             f"--process_id={i}", *extra])
    log = open(f"{workdir}{log_suffix}.p{i}.log", "w")  # pylint: disable=consider-using-with
    procs.append(subprocess.Popen([sys.executable, *cmd_tail, *dist], cwd=REPO,
                                  env=env_for(devices), stdout=log,
                                  stderr=subprocess.STDOUT))
  return procs


def train_cmd(workdir: str, data_root: str) -> list[str]:
  return ["-m", "launch.train", "--config=configs/tiny.py", f"--workdir={workdir}",
          "--noprogress", *overrides(data_root)]


def wait_all(procs, workdir, timeout=1200) -> list[int]:
  codes = [p.wait(timeout=timeout) for p in procs]
  if any(codes):
    tails = "".join(open(f"{workdir}.p{i}.log").read()[-3000:] for i in range(len(procs)))
    raise RuntimeError(f"{workdir}: exit codes {codes}\n{tails}")
  return codes


# -- the checkpoint round trips, run inside each process (--ckpt_worker) -------------------------
def ckpt_worker(mode: str, directory: str, npz: str) -> None:
  """mode "write": saves a (random) train state at step 1 and, process 0, its arrays to `npz`;
  "read": restores step 1 and checks it bitwise against `npz` (prints CKPT_EQUAL True/False)."""
  from launch import distributed as distributed_lib
  distributed_lib.Distributed(heartbeat_timeout=HEARTBEAT).resolved().initialize()
  import jax
  import numpy as np
  from configs import tiny
  from sg_detr_jax import sharding
  from sg_detr_jax.training.checkpoints import Checkpoints
  from sg_detr_jax.training.loop import build

  config = tiny.get_config()
  config.data.video_dim, config.data.text_dim = DIMS
  mesh = sharding.make_mesh(config.mesh)
  _, state, _, _ = build(config, 4)
  state = sharding.replicate(state, mesh)
  ckpts = Checkpoints(directory)
  if mode == "write":
    state = jax.tree_util.tree_map(lambda x: x + jax.numpy.ones_like(x), state)  # not the init
    ckpts.save(1, state, {"next_index": 1}, config)
    ckpts.close()
    if jax.process_index() == 0:
      np.savez(npz, *[np.asarray(x) for x in jax.tree_util.tree_leaves(state)])
  else:
    got, data = ckpts.restore(1, state)
    ckpts.close()
    want = np.load(npz)
    leaves = jax.tree_util.tree_leaves(got)
    equal = len(leaves) == len(want.files) and all(
        np.array_equal(np.asarray(x), want[f"arr_{i}"]) for i, x in enumerate(leaves))
    print(f"CKPT_EQUAL {equal and data == {'next_index': 1}}", flush=True)


def checkpoint_round_trips(out: str) -> dict:
  """C: 2 processes -> 1 process and 1 process -> 2 processes, bitwise."""
  import jax
  import numpy as np
  from configs import tiny
  from sg_detr_jax.training.checkpoints import Checkpoints
  from sg_detr_jax.training.loop import build

  me = [os.path.abspath(__file__), "--ckpt_worker"]
  res = {}
  two = os.path.join(out, "ckpt_2p")
  wait_all(start([*me, "write", two, two + ".npz"], two, 2, 2), two)
  config = tiny.get_config()
  config.data.video_dim, config.data.text_dim = DIMS
  _, state, _, _ = build(config, 4)
  ckpts = Checkpoints(two)
  got, data = ckpts.restore(1, state)
  ckpts.close()
  want = np.load(two + ".npz")
  leaves = jax.tree_util.tree_leaves(got)
  res["2_to_1"] = len(leaves) == len(want.files) and all(
      np.array_equal(np.asarray(x), want[f"arr_{i}"]) for i, x in enumerate(leaves)) and (
          data == {"next_index": 1})

  one = os.path.join(out, "ckpt_1p")
  state = jax.tree_util.tree_map(lambda x: x * 2 + 1, got)
  ckpts = Checkpoints(one)
  ckpts.save(1, state, {"next_index": 1}, config)
  ckpts.close()
  np.savez(one + ".npz", *[np.asarray(x) for x in jax.tree_util.tree_leaves(state)])
  wait_all(start([*me, "read", one, one + ".npz"], one, 2, 2), one)
  res["1_to_2"] = all("CKPT_EQUAL True" in open(f"{one}.p{i}.log").read() for i in range(2))
  return res


# -- preemption, run inside each process (--preempt_worker) ---------------------------------------
PREEMPT_STEPS = 600  # a bound: 0.05 s per step, so a run that ignores the signal ends in ~30 s


def preempt_worker() -> None:
  """Steps with a barrier each, printing "STEP n"; "PREEMPTED_AT n" when told to stop."""
  from launch import distributed as distributed_lib
  distributed_lib.Distributed(heartbeat_timeout=HEARTBEAT).resolved().initialize()
  from jax.experimental import multihost_utils
  from sg_detr_jax.training.preemption import Preemption
  with Preemption() as preemption:
    for step in range(1, PREEMPT_STEPS + 1):
      multihost_utils.sync_global_devices(f"step {step}")
      print(f"STEP {step}", flush=True)
      time.sleep(0.05)
      if preemption.reached(step):
        print(f"PREEMPTED_AT {step}", flush=True)
        return
  print("NOT_PREEMPTED", flush=True)


def preemption_round(out: str) -> dict:
  """P: SIGTERM to process 1 once both have stepped; when and where each process stopped."""
  workdir = os.path.join(out, "preempt")
  procs = start([os.path.abspath(__file__), "--preempt_worker"], workdir, 2, 1)
  logs = [f"{workdir}.p{i}.log" for i in range(2)]
  steps = lambda i: [int(x) for x in re.findall(r"^STEP (\d+)", open(logs[i]).read(), re.M)]  # noqa: E731
  deadline = time.time() + 300
  while time.time() < deadline and all(p.poll() is None for p in procs) and not all(
      steps(i) and steps(i)[-1] >= 3 for i in range(2)):
    time.sleep(0.05)
  signalled_after = steps(1)[-1] if steps(1) else None
  procs[1].send_signal(signal.SIGTERM)
  sent = time.time()
  codes = []
  for p in procs:
    try:
      codes.append(p.wait(timeout=120))
    except subprocess.TimeoutExpired:
      p.kill()
      codes.append(None)
  res = {"signalled_after_step": signalled_after, "exit_codes": codes,
         "seconds_to_exit": round(time.time() - sent, 1), "stopped_at": []}
  for log in logs:
    found = re.search(r"^PREEMPTED_AT (\d+)", open(log).read(), re.M)
    res["stopped_at"].append(int(found.group(1)) if found else None)
  if res["exit_codes"] != [0, 0] or None in res["stopped_at"]:
    res["log_tails"] = [open(log).read()[-2000:] for log in logs]
  return res


# -- the report ----------------------------------------------------------------------------------
def read_metrics(workdir: str) -> dict:
  """{"train": {step: loss}, "eval": {step: brief}, "lines": n, "train_lines": {step: n}} (a step
  logged again after a resume: its last line)."""
  res = {"train": {}, "eval": {}, "lines": 0, "train_lines": {}}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      r = json.loads(line)
      res["lines"] += 1
      if r["split"] == "train":
        res["train"][r["step"]] = r["loss"]
        res["train_lines"][r["step"]] = res["train_lines"].get(r["step"], 0) + 1
      else:
        res["eval"][r["step"]] = {k: v for k, v in r.items() if k not in ("step", "split")}
  return res


def final_params(workdir: str, template):
  """(step, parameter leaves) of the latest checkpoint of `workdir`, restored like `template`."""
  import jax
  import numpy as np
  from sg_detr_jax.training.checkpoints import load_params
  step, params = load_params(workdir, template, "latest")
  return step, [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]


def summarize(runs: dict, data_root: str) -> dict:
  import numpy as np
  from launch import cli
  from sg_detr_jax.training.loop import build
  config = cli.load_config("configs/tiny.py", overrides(data_root))
  template = build(config, 4)[1]["params"]  # one init for every restore
  params_of = {name: final_params(workdir, template) for name, workdir in runs.items()}
  ref = params_of["R"][1]
  report = {"runs": {}}
  for name, workdir in runs.items():
    step, params = params_of[name]
    entry = {"metrics": read_metrics(workdir), "final_step": step,
             "max_param_diff_vs_R": max(float(np.abs(a - b).max()) for a, b in zip(params, ref)),
             "files": sorted(os.listdir(workdir))}
    eval_dir = os.path.join(workdir, "eval")
    if os.path.isdir(eval_dir):
      entry["eval_files"] = sorted(os.listdir(eval_dir))
      with open(os.path.join(eval_dir, "val_preds.jsonl")) as f:
        entry["pred_qids"] = [json.loads(line)["qid"] for line in f]
      with open(os.path.join(eval_dir, "val_metrics.json")) as f:
        entry["val_metrics"] = json.load(f)
    with open(os.path.join(workdir, "provenance.json")) as f:
      entry["provenance"] = [r["process_count"] for r in json.load(f)["runs"]]
    report["runs"][name] = entry
  with open(os.path.join(data_root, "raw", "annotations", "val.jsonl")) as f:
    report["val_qids"] = [json.loads(line)["qid"] for line in f]
  return report


def main(out: str) -> None:
  from data_prep import build_tfds, synthetic
  t0 = time.time()
  out = os.path.abspath(out)
  data_root = os.path.join(out, "data")
  raw = os.path.join(data_root, "raw")
  synthetic.generate(raw, num_train=NUM_TRAIN, num_val=NUM_VAL, seed=3, video_dim=DIMS[0],
                     text_dim=DIMS[1])
  build_tfds.build("qvhighlights", [os.path.join(raw, "annotations")],
                   [os.path.join(raw, "video_features")], os.path.join(raw, "text_features"),
                   os.path.join(data_root, "tfds"))
  runs = {k: os.path.join(out, k) for k in "RM"}
  timings = {}

  # R and M side by side (three processes compiling at the same time).
  t = time.time()
  procs_r = start(train_cmd(runs["R"], data_root), runs["R"], 1, 4)
  procs = start(train_cmd(runs["M"], data_root), runs["M"], 2, 2,
                extra=(f"--heartbeat_timeout={HEARTBEAT}",), log_suffix=".killed")
  first = os.path.join(runs["M"], "checkpoints", "4")
  deadline = time.time() + 1500
  while not os.path.isdir(first) and all(p.poll() is None for p in procs) and (
      time.time() < deadline):
    time.sleep(0.05)
  lost = {"killed_at_step_4": os.path.isdir(first), "survivor_exit": None,
          "seconds_to_exit": None,
          "exit_codes_before_the_kill": [p.poll() for p in procs]}  # [None, None] unless a crash
  procs[1].send_signal(signal.SIGKILL)
  killed = time.time()
  try:
    lost["survivor_exit"] = procs[0].wait(timeout=HEARTBEAT * 6)
    lost["seconds_to_exit"] = round(time.time() - killed, 1)
  except subprocess.TimeoutExpired:
    pass  # a hang: reported, and ended below
  procs[0].send_signal(signal.SIGKILL)  # kill -9 of both (nothing left to do if it stopped)
  procs[0].wait()
  procs[1].wait()
  with open(f"{runs['M']}.killed.p0.log") as f:
    log = f.read()
  lost["survivor_log_tail"] = log[-3000:]
  if not lost["killed_at_step_4"]:  # something stopped the run first: keep both logs' ends
    with open(f"{runs['M']}.killed.p1.log") as f:
      lost["killed_log_tail"] = f.read()[-3000:]
  # jax's coordination service: "... unhealthy (stopped sending heartbeats):\n<process ids>".
  found = re.search(r"stopped sending heartbeats\):\s*\n([^\n]*)", log)
  lost["named_processes"] = found.group(1).strip() if found else None
  timings["M until the kill"] = time.time() - t
  wait_all(procs_r, runs["R"])
  timings["R"] = time.time() - t

  t = time.time()  # resume M with 2 processes
  wait_all(start(train_cmd(runs["M"], data_root), runs["M"], 2, 2), runs["M"])
  timings["M resumed"] = time.time() - t

  t = time.time()
  ckpt = checkpoint_round_trips(out)
  timings["C"] = time.time() - t

  t = time.time()
  preempted = preemption_round(out)
  timings["P"] = time.time() - t

  report = summarize(runs, data_root)
  report.update(lost_process=lost, checkpoints=ckpt, preemption=preempted,
                timings={k: round(v, 1) for k, v in timings.items()},
                total_seconds=round(time.time() - t0, 1))
  print("REPORT " + json.dumps(report), flush=True)


def _join_from_argv() -> None:
  """A worker's --coordinator=... --num_processes=N --process_id=I, as the JAX_* environment."""
  args = dict(a[2:].split("=", 1) for a in sys.argv if a.startswith("--") and "=" in a)
  os.environ.update(JAX_COORDINATOR_ADDRESS=args["coordinator"],
                    JAX_NUM_PROCESSES=args["num_processes"], JAX_PROCESS_ID=args["process_id"])


if __name__ == "__main__":
  if sys.argv[1] == "--preempt_worker":  # argv: --preempt_worker --distributed --coordinator=...
    _join_from_argv()
    preempt_worker()
  elif sys.argv[1] == "--ckpt_worker":  # argv: --ckpt_worker MODE DIR NPZ --distributed ...
    _join_from_argv()
    ckpt_worker(*sys.argv[2:5])
  else:
    main(sys.argv[1])
