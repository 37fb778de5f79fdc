"""SG-DETR model modules (flax.nnx)."""
