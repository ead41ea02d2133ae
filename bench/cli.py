"""The ``bench`` command. Each sub-command lives in ``bench.commands.<name>`` with ``add_parser`` and ``run``.

User mistakes (``UserError``) are reported on one line and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from .errors import UserError, is_environment_error

COMMANDS = ("train", "run", "leaderboard", "publish", "predict", "list")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    from bench import __version__

    parser = argparse.ArgumentParser(prog="bench", description="Benchmark multi-task learning architectures.")
    parser.add_argument("--version", action="version", version=f"mtl-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers = {}
    for name in COMMANDS:
        module = importlib.import_module(f"bench.commands.{name}")
        module.add_parser(sub)
        handlers[name] = module.run
    return parser, handlers


def main(argv: list[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line as typed, for a page's header
    try:
        code = handlers[args.command](args) or 0
        sys.stdout.flush()  # a reader that left (a closed pipe) is found here, not in the interpreter's exit
        return code
    except UserError as err:
        print(f"bench {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader left (``bench list studies | head -3``): stop quietly, as a pipe's writer does, and point
        # stdout at /dev/null so that the interpreter's last flush at exit does not raise it again
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer a closed pipe ended
    except OSError as err:
        if not is_environment_error(err):
            raise
        # the machine, not the study: nothing of the configuration is judged; what was stored stays whole
        where = f" writing {err.filename}" if err.filename else ""
        print(f"bench {args.command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
