"""Dataset builders and converters: real annotation/feature formats to TFDS, synthetic data."""
