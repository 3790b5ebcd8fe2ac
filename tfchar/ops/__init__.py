"""Layer 1: pure TensorFlow/numpy functions with no I/O: the PRNG and the draw, the cells' step math, the loss,
the bpc summary and the progressive scoring loop."""
