"""benchmarks/profile_step.py attributes XLA operations to the source lines that produced them."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import profile_step  # noqa: E402

_THIS = os.path.basename(__file__)


def _project(x, w):
  return x @ w  # the GEMM the test looks for


def _loss(x, w):
  h = jnp.tanh(_project(x, w))  # its caller
  return jnp.sum(h * h)


# Innermost frame first, then its caller (the walk up the HLO's stack-frame table).
_WHERE = (f"{_THIS}:{_project.__code__.co_firstlineno + 1} < "
          f"{_THIS}:{_loss.__code__.co_firstlineno + 1}")


def test_ops_map_to_source_lines_forward_and_backward(tmp_path):
  step = jax.jit(jax.value_and_grad(_loss, argnums=1))
  x, w = jnp.ones((64, 32)), jnp.full((32, 16), 0.01)
  limit = jax.config.jax_traceback_in_locations_limit
  jax.config.update("jax_traceback_in_locations_limit", 64)  # as profile_step.main does
  try:
    hlo = step.lower(x, w).compile().as_text()
  finally:  # a global setting: other tests keep the default
    jax.config.update("jax_traceback_in_locations_limit", limit)
  sources = profile_step.hlo_sources(hlo, package="tests/")
  dots = [(opcode, backward) for opcode, where, backward in sources.values()
          if "dot" in opcode and where == _WHERE]
  # The forward GEMM and the backward one (dL/dw = x^T g) both point at `x @ w` and its caller.
  assert (False in {b for _, b in dots}) and (True in {b for _, b in dots}), sources
  # A file in `skip` (the product primitives) is not one of "ours": with this file skipped no op
  # keeps the two-frame attribution above.
  skipped = profile_step.hlo_sources(hlo, package="tests/", skip=(f"tests/{_THIS}",))
  assert _WHERE not in {where for _, where, _ in skipped.values()}, skipped

  # The trace's per-op events name the compiled program's instructions.
  jax.block_until_ready(step(x, w))
  jax.profiler.start_trace(str(tmp_path))
  for _ in range(3):
    jax.block_until_ready(step(x, w))
  jax.profiler.stop_trace()
  times = profile_step.op_times(str(tmp_path))
  assert times and set(times) <= set(sources), (set(times) - set(sources))
  assert all(np.isfinite(t) and t >= 0 for t in times.values())
