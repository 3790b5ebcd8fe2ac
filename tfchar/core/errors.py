"""User-facing errors.

Every problem a user can cause (a bad path, a bad flag, a corrupt checkpoint) is raised as a
`TfcharError` whose message names the problem and the fix, in one line. The command lines print it as
`tfchar: error: <message>` and exit with its `exit_code` (`tfchar.cli.guard`); the Python API raises it.
"""

from __future__ import annotations


class TfcharError(Exception):
    """A problem caused by the user's input; the message says what is wrong and how to fix it."""

    exit_code = 2


class ConfigError(TfcharError):
    """An unknown key, a wrong type or an impossible value in a pipeline file or an override."""


class DataError(TfcharError):
    """A text source that cannot be read, decoded or split."""


class CheckpointError(TfcharError):
    """A missing, incompatible or corrupt checkpoint or run directory."""


class StorageError(TfcharError):
    """A file could not be written (disk full, read-only folder, file-size limit); what was written before is
    intact and no temporary is left."""


class RunLocked(TfcharError):
    """Another live process is writing the run directory."""


class TrainingInterrupted(TfcharError):
    """Ctrl-C or SIGTERM: a checkpoint was written and the run can be resumed. Exit code 128 + the signal's
    number (130 for SIGINT, 143 for SIGTERM)."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class TrainingDiverged(TfcharError):
    """The loss became NaN or infinite; the last good checkpoint stays."""

    exit_code = 3
