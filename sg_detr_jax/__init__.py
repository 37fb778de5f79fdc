"""sg_detr_jax: SG-DETR (Saliency-Guided DETR) for moment retrieval and highlight detection in JAX."""

__version__ = "0.1.0"
