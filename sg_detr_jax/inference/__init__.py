"""Inference: post-processing of the model outputs into windows, prediction writers, Predictor."""
