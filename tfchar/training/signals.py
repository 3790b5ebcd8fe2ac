"""Stopping a run cleanly on Ctrl-C (SIGINT) or a scheduler's SIGTERM (Slurm, Kubernetes, preemptible VMs).

Inside `deferring()` (the training loop) the first signal becomes a flag the loop checks after each step:
it writes a checkpoint and stops with exit status 128 + the signal's number (130, 143). Outside it (start-up,
the export), or on a second signal, the run stops at once with `Abort`, a KeyboardInterrupt that unwinds
through every `finally` (temporaries are removed) and exits with the same status. `stop` is set in both
cases, so a caller can still stop when Python swallowed the Abort (raised inside a finalizer).

Example:
    with StopFlag() as stop:
        prepare()                       # a signal here raises Abort
        with stop.deferring():
            for batch in data:
                train(batch)
                if stop.stop:
                    save_checkpoint_and_exit(stop.exit_code)
"""

from __future__ import annotations

import signal
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Abort(KeyboardInterrupt):
    """Stop now: a signal arrived outside the training loop, or a second one arrived."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal_name(signum)}")
        self.signum, self.exit_code = signum, 128 + signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopFlag:
    """A context manager that turns SIGINT and SIGTERM into `self.stop` (see the module docstring)."""

    def __init__(self):
        self.signum: int | None = None
        self._defer = False
        self._previous: dict = {}

    @property
    def stop(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return signal_name(self.signum or signal.SIGINT)

    @contextmanager
    def deferring(self):
        """While active, the first signal only sets the flag."""
        self._defer = True
        try:
            yield self
        finally:
            self._defer = False

    def _handler(self, signum, frame):
        if self.stop or not self._defer:
            # Recorded too: an exception raised while Python runs a finalizer (__del__) is only printed.
            self.signum = self.signum or signum
            raise Abort(signum)
        self.signum = signum
        again = "Ctrl-C" if signum == signal.SIGINT else signal_name(signum)
        print(f"\n{signal_name(signum)}: finishing the step and writing a checkpoint ({again} again to stop at once)",
              flush=True)

    def __enter__(self):
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not in the main thread (e.g. a tuner thread): no handler
                break
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self._previous = {}
