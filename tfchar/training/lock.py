"""One writer per run directory: `<run_dir>/writer.lock`, an advisory lock (flock) held while a process writes it.

The file names its holder (pid, host, start time, command). The kernel releases a flock when its process
dies, however it dies (kill -9, a crash; a reboot clears it too), so a lock file that still names a holder
but is not locked was left by a dead writer: the next one takes it over and says so. A clean release
empties the file. The lock is re-entrant within a process (a tune trial holds it around its fit).

Example:
    with RunLock(run_dir, log):
        ...  # write checkpoints; a second writer gets RunLocked naming this process
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from tfchar.core.errors import RunLocked, StorageError

LOCK_NAME = "writer.lock"

_held: dict[str, list] = {}  # resolved lock path -> [fd, depth]: the locks this process holds


def describe(holder: dict) -> str:
    """`pid 123 on host h since 2025-01-01 12:00:00`, from a lock file's contents."""
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since "
            f"{holder.get('started', '?')}")


class RunLock:
    """The writer lock of `run_dir` (created if missing); `acquire`/`release` or a `with` block.

    Args:
        run_dir: the run directory.
        log: receives the one-line note when a dead writer's lock is taken over.
    """

    def __init__(self, run_dir: str | Path, log: Callable[[str], None] = print):
        self.run_dir, self.log = Path(run_dir), log
        self.path = self.run_dir / LOCK_NAME

    def acquire(self) -> "RunLock":
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            key = str(self.path.resolve())
            if key in _held:
                _held[key][1] += 1
                return self
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StorageError(f"cannot create the lock {self.path} ({e.strerror}): the run directory must be "
                               f"writable; check its permissions and free space") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StorageError(f"cannot lock {self.path} ({e.strerror})") from None
            raise RunLocked(f"{self.run_dir} is being written by {describe(holder)} "
                            f"({holder.get('command', 'tfchar')}): wait for it to finish or stop it, or use "
                            f"another --train.run_dir") from None
        self._claim(fd)
        _held[key] = [fd, 1]
        return self

    def _claim(self, fd: int) -> None:
        """Note a dead writer's lock, then write this process's name into the file."""
        previous = _read(fd)
        if previous:
            self.log(f"note: took over the lock of {self.run_dir} from {describe(previous)}, which is no longer "
                     f"running")
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": _command()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
        except OSError as e:
            os.close(fd)
            raise StorageError(f"cannot write the lock {self.path} ({e.strerror}): free space in "
                               f"{self.run_dir}") from None

    def release(self) -> None:
        key = str(self.path.resolve())
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[key]
        fd = entry[0]
        try:
            os.ftruncate(fd, 0)  # a clean release: the next writer has nothing to take over
        except OSError:
            pass
        os.close(fd)  # releases the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _command(limit: int = 100) -> str:
    """This process's command line, shortened for a one-line message."""
    words = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    text = " ".join(words)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _read(fd: int) -> dict:
    """The holder a lock file names, {} if it is empty or unreadable."""
    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {"pid": "?", "host": "?", "started": "?"}
