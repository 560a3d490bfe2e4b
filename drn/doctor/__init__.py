"""``drn doctor``: is this setup ready for the plan of params.yaml? A read-only checklist.

May import: :mod:`drn.core`, :mod:`drn.models`, :mod:`drn.pipeline` (torch only inside the
checks that need it). Not :mod:`drn.report` or :mod:`drn.commands`.
"""
