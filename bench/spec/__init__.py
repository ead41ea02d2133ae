"""What a benchmark is, as typed data: the study spec (TOML -> ``Study``), one configuration's settings
(``TrainConfig``, the flat config schema, typed ``key=value`` parsing), search spaces and their built-in
defaults, the metric names of each task kind, and the hooks protocol that the study stages call and tracking
implements.

May import: ``bench.architectures``, ``bench.datasets`` (names and options, to validate against), ``bench.errors``.
No torch at import time; nothing here trains, stores or tracks.
"""
