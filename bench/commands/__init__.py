"""Sub-commands of ``bench``; each module has ``add_parser(subparsers)`` and ``run(args) -> int``."""
