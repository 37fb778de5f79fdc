"""Mixed precision: fp32 parameters, compute in `config.model.dtype`.

The train / eval steps cast the floating parameters and inputs to the compute dtype inside the
jitted function (the cast is differentiable, so gradients and optimizer state stay fp32). Softmax
and the losses run in fp32; masks use the finite `layers.MASK_VALUE`, safe under bf16.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str):
  if name not in DTYPES:
    raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {name!r}")
  return DTYPES[name]


def cast_floating(tree, dtype):
  """Casts every floating-point leaf of a pytree to `dtype` (ints / bools untouched)."""
  def cast(x):
    return x.astype(dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x
  return jax.tree_util.tree_map(cast, tree)
