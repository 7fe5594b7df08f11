"""Errors that carry a message meant for a person.

The CLI prints a :class:`GalaxymorphError` as one line (no traceback unless ``--debug``);
anything else is a bug and is shown with its traceback.
"""

from __future__ import annotations

from pathlib import Path


class GalaxymorphError(Exception):
    """A user-facing error: says what went wrong and, where it applies, which file."""

    def __init__(self, message: str, path: str | Path | None = None, hint: str | None = None):
        self.path = str(path) if path is not None else None
        self.hint = hint
        text = f"{self.path}: {message}" if self.path else message
        if hint:
            text = f"{text}\n  hint: {hint}"
        super().__init__(text)


class Interrupted(GalaxymorphError):
    """Work stopped by a signal before it finished: never to be read as success.

    ``exit_code`` follows the shell's 128 + signal number (143 for SIGTERM), so a batch system
    sees a failed job and requeues or reports it.
    """

    def __init__(self, message: str, path: str | Path | None = None, hint: str | None = None,
                 exit_code: int = 130):
        super().__init__(message, path, hint)
        self.exit_code = exit_code


class DataError(GalaxymorphError):
    """A dataset spec, catalog or file that cannot be used."""


class ImageReadError(DataError):
    """One image that cannot be decoded; datasets report and skip these."""


class ModelError(GalaxymorphError):
    """A model name, checkpoint or weight file that cannot be used."""


class ConfigError(GalaxymorphError):
    """A configuration value or file that is invalid."""
