"""Layer 2: the Keras char-RNN, its fused CPU layers and native time loops, the exportable generator, and
checkpoint files."""
