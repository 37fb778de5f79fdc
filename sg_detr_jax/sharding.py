"""Device meshes and shardings: the only place that builds a `jax.sharding.Mesh`.

Data parallelism over one mesh axis (`config.mesh.data_axis`, default "data" over all devices):
batches are split along their leading axis, the train state (13.5M parameters, ~160 MB with AdamW)
is replicated, and the jitted steps get explicit `in_shardings` / `out_shardings` (the modern form
of pjit). The mesh axes are `AxisType.Auto` on purpose: GSPMD propagates the batch sharding through
the model from the step's input shardings, so no layer needs sharding annotations; `jax.make_mesh`
would default to Explicit axes, which require sharding-in-types throughout the model.

Multi-host: every process feeds its own slice of the global batch
(`jax.make_array_from_process_local_data`); the mesh spans all processes' devices.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P


def make_mesh(mesh_cfg, devices=None) -> Mesh:
  """A mesh of `mesh_cfg.shape` (-1 = all remaining devices) named `mesh_cfg.axes`.

  Args:
    mesh_cfg: `config.mesh` (shape, axes, data_axis).
    devices: default `jax.devices()` (all processes' devices).
  """
  devices = np.asarray(jax.devices() if devices is None else devices)
  shape = list(mesh_cfg.shape)
  if shape.count(-1) > 1:
    raise ValueError(f"config.mesh.shape {tuple(shape)}: at most one -1")
  if -1 in shape:
    rest = int(np.prod([s for s in shape if s != -1]))
    shape[shape.index(-1)] = devices.size // rest
  if int(np.prod(shape)) != devices.size:
    raise ValueError(f"config.mesh.shape {tuple(mesh_cfg.shape)} -> {tuple(shape)} does not use "
                     f"the {devices.size} devices")
  if len(shape) != len(mesh_cfg.axes) or mesh_cfg.data_axis not in mesh_cfg.axes:
    raise ValueError(f"config.mesh.axes {tuple(mesh_cfg.axes)} must name every dimension of "
                     f"shape {tuple(shape)} and include data_axis {mesh_cfg.data_axis!r}")
  return Mesh(devices.reshape(shape), tuple(mesh_cfg.axes),
              axis_types=(AxisType.Auto,) * len(shape))


def data_axis(mesh: Mesh, mesh_cfg=None) -> str:
  return mesh_cfg.data_axis if mesh_cfg is not None else mesh.axis_names[0]


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, axis: str) -> NamedSharding:
  """Leading (batch) axis split over `axis`, the rest replicated."""
  return NamedSharding(mesh, P(axis))


def check_batch_size(global_batch: int, mesh: Mesh, axis: str) -> None:
  n = mesh.shape[axis]
  if global_batch % n:
    raise ValueError(f"batch size {global_batch} is not divisible by the {n} devices of mesh "
                     f"axis {axis!r}")


def shard_batch(batch: dict[str, Any], mesh: Mesh, axis: str) -> dict[str, jax.Array]:
  """This process's rows of the global batch -> global jax.Arrays split over `axis`.

  With one process the rows are the whole batch; with several, each passes its own contiguous
  rows, in process order (`data.pipeline.train_dataset` yields them).
  """
  sharding = batch_sharding(mesh, axis)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def global_batch(batch: dict[str, Any], mesh: Mesh, axis: str) -> dict[str, jax.Array]:
  """The WHOLE global batch, the same numpy arrays on every process -> global jax.Arrays split
  over `axis` (each process places only the rows of its own devices). For evaluation, where every
  process reads the whole split; training feeds per-process rows through `shard_batch`."""
  sharding = batch_sharding(mesh, axis)

  def place(v):
    v = np.asarray(v)
    return jax.make_array_from_callback(v.shape, sharding, lambda index: v[index])
  return {k: place(v) for k, v in batch.items()}


def step_mesh(mesh: Mesh) -> Mesh | None:
  """The mesh the jitted steps are built for: None on a one-device mesh (no shardings, default
  placement: the one executable that every one-device caller in a process shares)."""
  return mesh if mesh.size > 1 else None


def replicate(tree, mesh: Mesh):
  """Places a pytree (e.g. the train state) on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))
