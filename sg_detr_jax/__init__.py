"""sg_detr_jax: SG-DETR (Saliency-Guided DETR) for moment retrieval and highlight detection in JAX."""

__version__ = "0.1.0"

__all__ = ["Predictor"]


def __getattr__(name):
  # Lazy: `import sg_detr_jax` (e.g. for the evaluation module) must not pull in jax and flax.
  if name == "Predictor":
    from sg_detr_jax.inference.predictor import Predictor  # pylint: disable=g-import-not-at-top
    return Predictor
  raise AttributeError(f"module 'sg_detr_jax' has no attribute {name!r}")
