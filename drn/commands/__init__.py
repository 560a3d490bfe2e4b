"""The ``drn`` subcommands, one module each: its arguments (``add_parser``) and its run (``run``).

A module is named as its subcommand, but ``import_`` (``drn import``: ``import`` is a keyword).

May import: every other ``drn`` package (inside ``run``, so that ``drn --help`` and the parser
load no torch). :mod:`drn.cli` only assembles these modules.
"""
