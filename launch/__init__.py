"""Entry points: training, evaluation, inference and cluster launch scripts."""
