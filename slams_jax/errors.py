"""The errors slams_jax raises on purpose, all under one base, :class:`Error`.

Each message names what is wrong (the file, config key, field, shape or value) and what was expected, so
the entry points print it as one line and exit with status 2 (the traceback with ``--traceback``). Each
class also derives from the built-in exception its cases used to raise, so ``except ValueError`` and
``except FileNotFoundError`` written against earlier versions still catch them.
"""

from __future__ import annotations

import sys
from typing import Callable


class Error(Exception):
    """Base of every error slams_jax raises about its inputs; the message names the culprit."""


class ConfigError(Error, ValueError):
    """A configuration value or key is wrong; the message names the key."""


class DataError(Error, ValueError):
    """A data store does not have what the config asks for; the message names the store and the field."""


class MissingFileError(Error, FileNotFoundError):
    """A file or store that the config or the call names does not exist; the message gives its path."""


class ObservationError(Error, ValueError):
    """An observation that does not fit the model or the trajectory; the message names it."""


class CheckpointError(Error, RuntimeError):
    """A checkpoint is missing, corrupt or incompatible; the message names its path."""


class SamplingError(Error, RuntimeError):
    """Sampling produced non-finite or diverged values; the message names the member and the step."""


class TwinError(ConfigError):
    """A bad twin-experiment config or input; the message names the field and what was expected."""


def one_line_errors(main: Callable, traceback: Callable[[], bool] = lambda: False) -> Callable:
    """``main`` for an entry point: an :class:`Error` becomes one line on stderr and exit status 2.

    ``traceback()`` (read when the error happens, e.g. a ``--traceback`` flag) re-raises it instead.
    """

    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Error as e:
            if traceback():
                raise
            message = " ".join(str(e).split())
            print(f"error ({type(e).__name__}): {message} [--traceback shows where]", file=sys.stderr)
            sys.exit(2)

    return run


__all__ = ["Error", "ConfigError", "DataError", "MissingFileError", "ObservationError", "CheckpointError",
           "SamplingError", "TwinError",
           "one_line_errors"]
