"""Untrained reference points: the cosine-similarity baseline and chance."""
