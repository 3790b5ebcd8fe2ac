"""Importing TensorFlow without its start-up chatter (the command lines and the API call this first)."""

from __future__ import annotations

import os


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up chatter (CUDA probing, CPU notes) kept off stderr.

    That chatter is written before absl logging is set up, so TF_CPP_MIN_LOG_LEVEL alone does not hide it.
    TFCHAR_VERBOSE=1 shows it; Python exceptions raised by the import still reach the user.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("TFCHAR_VERBOSE"):
        return
    try:
        saved = os.dup(2)
    except OSError:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf  # the lazy import this module exists for

        tf.config.list_physical_devices()  # the CUDA probe logs here when no GPU driver exists
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
