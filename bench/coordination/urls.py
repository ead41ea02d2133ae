"""Storage URLs: which databases a study can be shared through, and URLs with their passwords masked in every
line the harness prints."""

from __future__ import annotations

import os
import re
from pathlib import Path

from bench.errors import UnknownChoice, UserError

DIALECTS = ("postgresql", "sqlite")


_PASSWORD_RE = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<tail>@)")


def mask_url(text: str | None) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URL in it replaced by ``***``."""
    if not text:
        return ""
    return _PASSWORD_RE.sub(lambda m: f"{m['head']}***{m['tail']}", str(text))


def clean_error(err: BaseException, url: str) -> str:
    """The first line of an error, with ``url``'s credentials masked wherever they appear."""
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url).password
    except Exception:  # noqa: BLE001 - an unparsable URL has no password to hide
        password = None
    if password:
        line = line.replace(str(password), "***")
    return mask_url(line)


def check_storage_url(url: str) -> str:
    """The dialect of a storage URL (``postgresql`` or ``sqlite``), or a one-line ``UserError``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise UserError(f"--storage {mask_url(url)!r} is not a database URL; expected e.g. "
                        "postgresql://user@host/db or sqlite:///path/to/optuna.db") from None
    dialect = parsed.get_backend_name()
    if dialect not in DIALECTS:
        raise UnknownChoice("--storage database", dialect, DIALECTS)
    if dialect == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise UserError("--storage sqlite needs a file (sqlite:///path/to/optuna.db), not an in-memory database")
        parent = Path(parsed.database).expanduser().resolve().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise UserError(f"--storage {url!r}: directory {parent} does not exist or is not writable")
    return dialect
