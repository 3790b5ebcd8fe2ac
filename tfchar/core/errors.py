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


class TrainingInterrupted(TfcharError):
    """Ctrl-C: a checkpoint was written and the run can be resumed."""

    exit_code = 130


class TrainingDiverged(TfcharError):
    """The loss became NaN or infinite; the last good checkpoint stays."""

    exit_code = 3
