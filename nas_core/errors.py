"""Exceptions shown to users.

Every error a user can cause (bad input, a wrong path, a store of another study)
is a :class:`NasError` whose message is one line naming the offending thing and,
where possible, how to fix it. The CLI prints that line and exits non-zero; it
shows a traceback only with ``--verbose``.
"""

from __future__ import annotations


class NasError(Exception):
    """An error caused by the user's input, reported as one clear line.

    Line breaks in the message (for instance inside a value the user typed) are
    escaped, so the message stays one line whatever it quotes.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        text = str(message)
        if len(text.splitlines()) > 1 or text != text.rstrip("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"):
            text = text.translate(_LINE_BREAKS)
        super().__init__(text, *args)


#: every character ``str.splitlines`` breaks on, written as its escape
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


class ConfigError(NasError, ValueError):
    """A malformed space, config, option or data file."""


class StoreError(NasError):
    """A store that is corrupt, of another study, or of an incompatible version."""


class TrialFailed(Exception):
    """Raised inside an estimator to turn the current trial into a failed one."""


class TrialTimeout(TrialFailed):
    """The trial exceeded its per-trial time limit."""
