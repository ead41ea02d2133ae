"""Sub-commands of ``bench``; each module has ``add_parser(subparsers)`` and ``run(args) -> int``: argument
parsing and printing only, the work is done by the layers below (any of them may be imported)."""
