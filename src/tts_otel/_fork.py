"""What a forked child must rebuild: locks another thread held at the fork are
never released there, threads do not follow a fork, and a copied random
generator would repeat its parent's sequence."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_resets: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()


def reset_after_fork(owner: T, reset: Callable[[T], None]) -> None:
    """In a forked child, call ``reset(owner)``, for as long as ``owner`` lives.

    One process-wide hook serves every owner (``os.register_at_fork`` hooks can
    never be removed), and owners are held weakly.
    """
    _resets[owner] = reset


def _in_child() -> None:
    for owner, reset in list(_resets.items()):
        reset(owner)


os.register_at_fork(after_in_child=_in_child)
