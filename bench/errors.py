"""Errors raised for user mistakes: the CLI prints their message on one line and exits non-zero."""

from __future__ import annotations

import errno

# errors of the machine, not of a configuration (full disk, quota, read-only or forbidden paths, a failing device):
# a trial they end is retried, never counted toward the budget; the command reports them in one line (exit 1)
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


def is_environment_error(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS


class UserError(ValueError):
    """Bad input from the user (a name, an option, a file): reported without a traceback."""


class UnknownChoice(UserError):
    """A name that is not among the valid choices; the message lists them."""

    def __init__(self, what: str, name: str, choices) -> None:
        self.what, self.name, self.choices = what, name, sorted(choices)
        super().__init__(f"unknown {what} {name!r}; valid choices: {', '.join(self.choices)}")
