"""Errors raised for user mistakes: the CLI prints their message on one line and exits non-zero."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user (a name, an option, a file): reported without a traceback."""


class UnknownChoice(UserError):
    """A name that is not among the valid choices; the message lists them."""

    def __init__(self, what: str, name: str, choices) -> None:
        self.what, self.name, self.choices = what, name, sorted(choices)
        super().__init__(f"unknown {what} {name!r}; valid choices: {', '.join(self.choices)}")
