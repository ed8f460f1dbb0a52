"""Passes on the common TensorFlow graph (SavedModel level)."""
