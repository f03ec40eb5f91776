"""Exceptions shown to users.

Every error a user can cause (bad input, a wrong path, a store of another study)
is a :class:`NasError` whose message is one line naming the offending thing and,
where possible, how to fix it. The CLI prints that line and exits non-zero; it
shows a traceback only with ``--verbose``.
"""

from __future__ import annotations


class NasError(Exception):
    """An error caused by the user's input, reported as one clear line."""


class ConfigError(NasError, ValueError):
    """A malformed space, config, option or data file."""


class StoreError(NasError):
    """A store that is corrupt, of another study, or of an incompatible version."""


class TrialFailed(Exception):
    """Raised inside an estimator to turn the current trial into a failed one."""


class TrialTimeout(TrialFailed):
    """The trial exceeded its per-trial time limit."""
