"""The native CPU time loops (`kernels/rnn_loops.cc`), compiled on first use and cached.

Like torch's `cpp_extension.load`, the kernels are built with the local C++ compiler against the installed
TensorFlow's headers (`tf.sysconfig`), for this CPU (`-march=native`), the first time a fused layer needs
them. The library is cached under `$TFCHAR_CACHE/native/<key>/` (default `~/.cache/tfchar`), keyed on the
source, the TensorFlow version, the compiler and its flags and the CPU's features, so a TensorFlow upgrade
or another CPU rebuilds it.

Without a compiler, or with `TFCHAR_NATIVE=0`, `ops()` returns None and the fused layers run their XLA
loops instead: the same function, slower (one warning says so). `python -m tfchar.native` builds the
library now and prints where it is, or why it could not be built.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import tensorflow as tf

from tfchar.core.paths import cache_dir

SOURCE = Path(__file__).with_name("kernels") / "rnn_loops.cc"
# -mno-avx512fp16: Eigen's AVX512-FP16 packet code does not compile with GCC 12; float32 does not need it.
OPT_FLAGS = ["-O3", "-march=native", "-DNDEBUG", "-w"]
OPTIONAL_FLAGS = ["-mno-avx512fp16"]

_lock = threading.Lock()
_state: dict = {}
log = logging.getLogger("tfchar")
# What a failed build or load raises: no compiler, a compile error, a library that does not load.
BUILD_ERRORS = (RuntimeError, OSError, subprocess.SubprocessError, tf.errors.OpError)


def enabled() -> bool:
    """False when the user turned the native loops off (`TFCHAR_NATIVE=0`)."""
    return os.environ.get("TFCHAR_NATIVE", "1").strip().lower() not in ("0", "false", "off", "no")


def cache_root() -> Path:
    return cache_dir() / "native"


def compiler() -> str | None:
    """The C++ compiler: `$CXX`, else g++, else c++ (None if there is none)."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _version(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.splitlines()[0] if out.stdout else cxx


def _accepts(cxx: str, flag: str) -> bool:
    """Whether the compiler knows `flag` (compiles an empty translation unit with it)."""
    out = subprocess.run([cxx, flag, "-x", "c++", "-fsyntax-only", "-"], input="", capture_output=True,
                         text=True, timeout=60)
    return out.returncode == 0


def _cpu() -> str:
    """This CPU's identity for the cache key: `-march=native` code may not run on another CPU (a shared home
    directory, a container image built elsewhere)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        return next((line for line in info.splitlines() if line.startswith(("flags", "Features"))), info[:4096])
    except OSError:
        import platform

        return f"{platform.machine()} {platform.processor()}"


def _recipe() -> tuple[str, list, list, Path]:
    """(compiler, its flags, TensorFlow's flags, the cached library's path: keyed by all that makes it)."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (install g++, or set CXX)")
    flags = OPT_FLAGS + [f for f in OPTIONAL_FLAGS if _accepts(cxx, f)]
    tf_flags = tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()
    key = hashlib.sha256("\0".join([SOURCE.read_text(), tf.__version__, _version(cxx), _cpu(), *flags, *tf_flags])
                         .encode()).hexdigest()[:16]
    return cxx, flags, tf_flags, cache_root() / key / "rnn_loops.so"


def library_path() -> Path:
    """Where this machine's build of the kernels is cached (it may not exist yet)."""
    return _recipe()[3]


def build(force: bool = False) -> Path:
    """Compile the kernels (unless cached) and return the shared library's path.

    Raises:
        RuntimeError: no compiler, or the compiler failed (the message carries its last lines).
    """
    cxx, flags, tf_flags, target = _recipe()
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Compile to a temporary name and rename: concurrent processes never load a half-written library.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    cmd = [cxx, "-shared", "-fPIC", *flags, str(SOURCE), "-o", tmp, *tf_flags]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        os.unlink(tmp)
        tail = " | ".join(line for line in out.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"{Path(cxx).name} failed to compile {SOURCE.name}: {tail}")
    os.replace(tmp, target)
    return target


def load():
    """Load the cached library (building it if needed); one that does not load (truncated, corrupted) is
    rebuilt once."""
    try:
        return tf.load_op_library(str(build()))
    except tf.errors.OpError:
        return tf.load_op_library(str(build(force=True)))


def ops():
    """The loaded op module (`tfchar_lstm_forward`, ...), or None when the native loops are unavailable."""
    if not enabled():
        return None
    with _lock:
        if "ops" not in _state:
            try:
                _state["ops"] = load()
            except BUILD_ERRORS as e:
                _state["ops"] = None
                log.warning("tfchar: native RNN loops unavailable (%s); using the slower XLA loops. "
                            "Install g++ to enable them, or set TFCHAR_NATIVE=0 to silence this.", e)
        return _state["ops"]
