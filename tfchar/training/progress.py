"""Progress bars: one line per epoch (step, loss, chars/s, ETA) and one per long scoring pass (characters
scored, chars/s, ETA); on a TTY the line is redrawn, otherwise a plain line is printed every 10%."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """Progress of one epoch.

    Args:
        total: steps in the epoch.
        done: steps already done (resume in mid-epoch).
        label: shown before the bar, e.g. "epoch 3/50".
    """

    def __init__(self, total: int, done: int = 0, label: str = "", stream=None):
        self.total, self.start_done, self.label = total, done, label
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.t0 = time.time()
        self.loss = None
        self._last_print = 0.0
        self._last_decile = done * 10 // max(1, total)

    def update(self, done: int, loss: float, chars_per_sec: float) -> None:
        self.loss = loss if self.loss is None else 0.9 * self.loss + 0.1 * loss  # smoothed, like char-rnn's print
        now = time.time()
        rate = (done - self.start_done) / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        decile = done * 10 // max(1, self.total)
        if self.tty and now - self._last_print < 0.1 and done < self.total:
            return
        if not self.tty and decile == self._last_decile and done < self.total:
            return
        self._last_print, self._last_decile = now, decile
        width = 24
        filled = width * done // max(1, self.total)
        bar = "=" * filled + (">" if filled < width else "") + " " * max(0, width - filled - 1)
        line = (f"{self.label} [{bar}] {done}/{self.total} loss {self.loss:.4f} "
                f"{chars_per_sec:,.0f} chars/s ETA {_clock(eta)}")
        end = "\n" if (done >= self.total or not self.tty) else ""
        self.stream.write(("\r" if self.tty else "") + line + end)
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class CountBar:
    """Progress of a long count, e.g. the characters an evaluation scores; call it as `progress(done, total)`.

    Silent for its first `delay` seconds, so short evaluations print nothing; then a bar (TTY) or a line every
    10% (log files).

    Args:
        label: shown before the bar, e.g. "validation".
        unit: what is counted, e.g. "chars".
        delay: seconds before anything is shown.
    """

    def __init__(self, label: str, unit: str = "chars", delay: float = 2.0, stream=None):
        self.label, self.unit, self.delay = label, unit, delay
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.t0 = time.time()
        self._last_print, self._last_decile, self._shown = 0.0, -1, False

    def __call__(self, done: int, total: int) -> None:
        now = time.time()
        elapsed = now - self.t0
        decile = done * 10 // max(1, total)
        if elapsed < self.delay or (self.tty and now - self._last_print < 0.1 and done < total):
            return
        if not self.tty and decile == self._last_decile and done < total:
            return
        self._last_print, self._last_decile, self._shown = now, decile, True
        rate = done / max(elapsed, 1e-9)
        eta = (total - done) / rate if rate > 0 else 0.0
        width = 24
        filled = width * done // max(1, total)
        bar = "=" * filled + (">" if filled < width else "") + " " * max(0, width - filled - 1)
        line = f"{self.label} [{bar}] {done:,}/{total:,} {self.unit} {rate:,.0f} {self.unit}/s ETA {_clock(eta)}"
        self.stream.write(("\r" if self.tty else "") + line + ("" if self.tty else "\n"))
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line (if one was drawn)."""
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
