"""The shipped study specs (``*.toml``), installed as package data of ``bench.studies`` so that
``bench run --study NAME`` finds them from any directory, in an editable or a regular install."""
