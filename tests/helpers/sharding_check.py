"""Runs in its own process (8 simulated CPU devices): one train step and one eval forward on a 1-
and an 8-device mesh, and a checkpoint written from the 8-device mesh restored on one device.
Prints a JSON report; tests/test_sharding.py asserts on it. (2 and 4 devices, in one and in two
processes, are trained by tests/helpers/multiprocess_check.py.)"""

import os
import sys

# LLVM's optimisations off (compiles ~30 % faster; both meshes are compiled alike).
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
                           " --xla_force_host_platform_device_count=8").strip()

import json  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from configs import tiny  # noqa: E402
from sg_detr_jax import sharding  # noqa: E402
from sg_detr_jax.data.random_batch import random_batch  # noqa: E402
from sg_detr_jax.training import steps as steps_lib  # noqa: E402
from sg_detr_jax.training.checkpoints import Checkpoints  # noqa: E402
from sg_detr_jax.training.loop import build  # noqa: E402


MESHES = (1, 8)


def main():
  config = tiny.get_config()
  config.model.dropout = 0.1  # randomness on, to check it does not depend on the sharding
  config.model.decoder_layers = 1  # tiny has one layer per stack otherwise: 4 compiles here
  batch = random_batch(config, 8, varied=True)  # rows of different lengths and windows
  key = jax.random.key(0, impl=config.train.prng_impl)
  report = {"devices": jax.device_count(), "runs": {}}
  ref = None
  for n in MESHES:
    config.mesh.shape = (n,)
    mesh = sharding.make_mesh(config.mesh, jax.devices()[:n])
    graphdef, state, tx, schedule = build(config, 10)
    state = sharding.replicate(state, mesh)
    train = steps_lib.make_train_step(config, 10, mesh)
    predict = steps_lib.make_predict_step(config, mesh)
    preds = jax.device_get(predict(state["params"], batch))
    new_state, metrics = train(state, sharding.shard_batch(batch, mesh, "data"), key)
    params = [np.asarray(x) for x in jax.tree_util.tree_leaves(new_state["params"])]
    pred_leaves = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(preds)]
    run = {"loss": float(metrics["loss"]),
           "param_sharding": str(jax.tree_util.tree_leaves(new_state["params"])[0].sharding)}
    if ref is None:
      ref = (params, pred_leaves, run["loss"])
    run["max_param_diff"] = max(float(np.abs(a - b).max()) for a, b in zip(params, ref[0]))
    run["max_pred_diff"] = max(float(np.abs(a - b).max()) for a, b in zip(pred_leaves, ref[1]))
    run["loss_diff"] = abs(run["loss"] - ref[2])
    report["runs"][n] = run

  # A checkpoint written from the 8-device mesh, restored onto one device.
  with tempfile.TemporaryDirectory() as tmp:
    ckpts = Checkpoints(tmp)
    ckpts.save(1, new_state, {}, config)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one), new_state)
    restored, _ = ckpts.restore(1, target)
    ckpts.close()
    leaves = jax.tree_util.tree_leaves(restored)
    report["restore"] = {
        "equal": all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                     zip(leaves, jax.tree_util.tree_leaves(new_state))),
        "single_device": all(len(x.sharding.device_set) == 1 for x in leaves)}
  print("REPORT " + json.dumps(report))


if __name__ == "__main__":
  main()
