"""Name → factory registry behind ``envs.make``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from envs.base import TextEnv

# name -> "module:callable"; factories are imported lazily so that a heavy engine (ALFWorld) costs nothing
# unless its environment is made.
_REGISTRY: dict[str, str | Callable[..., TextEnv]] = {}


# Old per-env names of the step cap, still accepted (with a DeprecationWarning) while callers move to ``max_steps``.
def register(name: str, factory: str | Callable[..., TextEnv]) -> None:
    """Register ``factory`` (a callable, or ``"module:attr"`` imported on first use) under ``name``."""
    _REGISTRY[name] = factory


def names() -> list[str]:
    return sorted(_REGISTRY)


def make(name: str, **options: Any) -> TextEnv:
    """Create the environment registered as ``name``; an unknown name lists the valid ones.

    Every environment takes ``max_steps`` (the cap on agent steps per episode, a non-terminal truncation; each env
    has its own default)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown environment {name!r}; valid names are: {', '.join(names())}") from None
    if isinstance(factory, str):
        module, attr = factory.split(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(**options)
