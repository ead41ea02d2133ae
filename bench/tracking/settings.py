"""Which W&B mode a run uses, and whether this machine is logged in: no ``wandb`` import, no network."""

from __future__ import annotations

import netrc
import os
import urllib.parse
from pathlib import Path

from bench.errors import UnknownChoice
from bench.spec.tracking import MODES

DEFAULT_BASE_URL = "https://api.wandb.ai"
# WANDB_MODE values wandb itself accepts, mapped to ours
_ENV_MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline",
              "disabled": "disabled"}


def base_url(env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (env.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def logged_in(env: dict[str, str] | None = None) -> bool:
    """An API key is at hand: ``WANDB_API_KEY``, or a netrc entry for the server (what ``wandb login`` writes)."""
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY"):
        return True
    host = urllib.parse.urlsplit(base_url(env)).hostname or ""
    path = env.get("NETRC") or str(Path.home() / ".netrc")
    try:
        return bool(host) and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(cli: str | None = None, spec: str | None = None, env: dict[str, str] | None = None) -> tuple[str, str]:
    """(mode, where it came from): ``--wandb``, then ``WANDB_MODE``, then the spec, then online when logged in,
    else offline."""
    env = os.environ if env is None else env
    if cli is not None:
        if cli not in MODES:
            raise UnknownChoice("--wandb mode", cli, MODES)
        return cli, "--wandb"
    raw = env.get("WANDB_MODE")
    if raw:
        if raw.lower() not in _ENV_MODES:
            raise UnknownChoice("WANDB_MODE", raw, list(_ENV_MODES))
        return _ENV_MODES[raw.lower()], "WANDB_MODE"
    if spec is not None:
        return spec, "the study spec"
    if logged_in(env):
        return "online", "logged in"
    return "offline", "default"
