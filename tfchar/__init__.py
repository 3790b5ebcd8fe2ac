"""tfchar: character-level RNN language models on TensorFlow/Keras (char-rnn reborn)."""

import os as _os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) hides tfchar's own output.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
