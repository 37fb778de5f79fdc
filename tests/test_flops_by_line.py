"""benchmarks/flops_by_line.py counts the products' FLOPs per source line (hand-counted cases)."""

import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import flops_by_line  # noqa: E402

_THIS = os.path.basename(__file__)


def _project(x, w):
  return x @ w  # [4, 8] x [8, 16]: 2 * 4 * 16 * 8 = 1024 FLOPs


def _conv(x, k):  # [2, 10, 3] * [3, 3, 5], 'SAME': 2 * (2 * 10 * 5) * (3 * 3) = 1800 FLOPs
  return jax.lax.conv_general_dilated(x, k, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))


def _model(x, w, v, k):
  h = jnp.tanh(_project(x, w))
  return jnp.sum(h) + jnp.sum(_conv(v, k))


def _line(fn, offset):
  return f"{_THIS}:{fn.__code__.co_firstlineno + offset}"


def test_products_are_counted_by_hand_and_by_line():
  x, w = jnp.ones((4, 8)), jnp.ones((8, 16))
  v, k = jnp.ones((2, 10, 3)), jnp.ones((3, 3, 5))
  counts = flops_by_line.count(_model, x, w, v, k, package="tests/", skip=())
  project = f"{_line(_project, 1)} < {_line(_model, 1)}"
  conv = f"{_line(_conv, 1)} < {_line(_model, 2)}"
  assert counts == {project: 1024, conv: 1800}, counts
  # The gradient with respect to w adds its one product (x^T g, 1024) to the same line; none for x.
  grads = flops_by_line.count(jax.grad(_model, argnums=(1, 3)), x, w, v, k, package="tests/",
                              skip=())
  assert grads[project] == 2 * 1024, grads
  # Inside jit and a scan of length 3: sub-jaxprs are walked, the scan body counted 3 times.
  scanned = jax.jit(lambda x, w: jax.lax.scan(lambda c, _: (c, _project(x, w)), 0.0, None,
                                              length=3)[1])
  total = sum(flops_by_line.count(scanned, x, w, package="tests/", skip=()).values())
  assert total == 3 * 1024


def test_model_forward_products_are_attributed_to_model_lines():
  from conftest import tiny_config
  predict = flops_by_line.run(tiny_config(), 4, predict=True, top=1000)
  lines = predict["by_line"]
  assert predict["total_flops"] > 0 and lines
  # The ATSS stems' convolutions count at the head's line; the products of models/matmul.py are
  # their callers' (skipped), so no line starts there.
  from sg_detr_jax.models import atss_head
  stem_line = atss_head.Stem.__call__.__code__.co_firstlineno + 2  # x = relu(norm(conv(x)))
  assert any(k.endswith(f"< models/atss_head.py:{stem_line}") for k in lines), lines
  assert not any(k.startswith("models/matmul.py") for k in lines), lines
