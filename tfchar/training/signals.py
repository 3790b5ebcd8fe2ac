"""Stopping a run cleanly: the first Ctrl-C becomes a flag the loop checks after each step (a second aborts).

Example:
    with StopFlag() as stop:
        for batch in data:
            train(batch)
            if stop.stop:
                save_checkpoint_and_exit()
"""

from __future__ import annotations

import signal


class StopFlag:
    """A context manager that turns SIGINT into `self.stop = True` while it is active."""

    def __init__(self):
        self.stop = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.stop:
                raise KeyboardInterrupt
            self.stop = True
            print("\ninterrupt: writing a checkpoint (Ctrl-C again to abort)", flush=True)

        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not in the main thread (e.g. a tuner worker): no handler
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
