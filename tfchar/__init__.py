"""tfchar: character-level RNN language models on TensorFlow/Keras (char-rnn reborn).

Importing the package does not import TensorFlow: `python -m tfchar.demo` and errors in flags stay fast.
Entry points call `import_tensorflow_quietly()` first (see `errors.cli_guard`).
"""

import os as _os

__version__ = "0.1.0"


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up chatter (CUDA probing, CPU notes) kept off stderr.

    That chatter is written before absl logging is set up, so TF_CPP_MIN_LOG_LEVEL alone does not hide it.
    TFCHAR_VERBOSE=1 shows it; Python exceptions raised by the import still reach the user.
    """
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _os.environ.get("TFCHAR_VERBOSE"):
        return
    try:
        saved = _os.dup(2)
    except OSError:
        return
    devnull = _os.open(_os.devnull, _os.O_WRONLY)
    try:
        _os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs here when no GPU driver exists
    finally:
        _os.dup2(saved, 2)
        _os.close(saved)
        _os.close(devnull)

