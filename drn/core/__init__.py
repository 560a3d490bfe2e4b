"""The foundation every layer stands on: errors and exit codes, image files, the thread policy,
the progress hook.

Owns: :mod:`~drn.core.errors` (``UsageError``, ``DataError`` and their exit codes),
:mod:`~drn.core.images` (reading, atomic writing, listing and pairing image files, modcrop),
:mod:`~drn.core.threads` (how many CPUs a process uses, and BLAS's threads while the protocol
computes), :mod:`~drn.core.progress` (the ``Progress`` hook of long loops).

May import: the standard library, numpy, Pillow, threadpoolctl. No other ``drn`` package.
"""
