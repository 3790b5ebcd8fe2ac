"""Layer 0, no TensorFlow: user-facing errors, the choice lists, the typed config and the vocabulary."""
