"""Porting between the official PyTorch SG-DETR and this JAX model: checkpoints both ways and
numerical parity checks. torch is an optional extra (`pip install -e '.[torch]'`)."""
