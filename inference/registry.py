"""The one lookup behind ``make_asr``, ``make_dialogue`` and ``make_tts``: a backend is chosen
by the type of its options object, never by an if/elif chain of names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["build_backend"]

T = TypeVar("T")


def build_backend(
    factories: Mapping[type[Any], Callable[[Any], T]], options: object, stage: str
) -> T:
    """Build the ``stage`` backend that ``options`` configures (``TypeError`` if none does)."""
    try:
        factory = factories[type(options)]
    except KeyError:
        known = ", ".join(t.__name__ for t in factories)
        name = type(options).__name__
        raise TypeError(f"no {stage} backend for {name}; known: {known}") from None
    return factory(options)
