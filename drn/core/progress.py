"""Showing progress: the ``Progress`` hook of long loops over many items.

:data:`Progress` is what the loops over many images (building the training cache, scoring a set)
accept to show their progress: called with the items, their number and a description, it returns
an iterator over the same items. :func:`no_progress`, the default, shows nothing; the ``drn``
command (:mod:`drn.commands`) passes a progress bar. Training's own console is
:class:`drn.engine.reporter.TrainingReporter`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
Progress = Callable[[Iterable[T], int, str], Iterator[T]]


def no_progress(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    """The :data:`Progress` that shows nothing: ``iter(items)``."""
    return iter(items)
