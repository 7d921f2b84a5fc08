"""Stage backends and the one registry per stage that lists them.

A backend module declares one :class:`Backend`: its name in the configuration, its settings
model (the pydantic model of its configuration section, a :class:`BackendSettings`), its
options dataclass and its factory. A stage lists its backends in a :class:`Registry`, which
builds a backend from options (chosen by their type, never by an if/elif chain of names) or
from a configuration section, and gives the configuration its discriminated union on
``backend`` (:meth:`Registry.settings_type`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Self, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, model_validator

__all__ = ["Backend", "BackendSettings", "Registry"]

T = TypeVar("T")


class BackendSettings(BaseModel):
    """One backend's configuration section.

    A subclass pins ``backend`` to its name (``backend: Literal["piper"] = "piper"``), holds
    only its own keys and builds its options dataclass in :meth:`options`; the options'
    own checks run when the section is validated.
    """

    model_config = ConfigDict(extra="forbid")
    backend: str

    @abstractmethod
    def options(self) -> Any:
        """The backend's options dataclass, built from this section."""

    def fallback_section(self) -> BackendSettings | None:
        """A section of the same stage to build and use while this backend's service is
        down (None: no fallback)."""
        return None

    @model_validator(mode="after")
    def _options_are_valid(self) -> Self:
        self.options()
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend(Generic[T]):
    """One backend of a stage: ``make(options)`` builds it from an ``options`` instance.

    ``settings`` is its configuration section; None for a backend built from options only
    (not named in the configuration).
    """

    name: str
    options: type[Any]
    make: Callable[[Any], T]
    settings: type[BackendSettings] | None = None

    def __post_init__(self) -> None:
        if self.settings is None:
            return
        declared = self.settings.model_fields["backend"].default
        if declared != self.name:
            raise ValueError(
                f"{self.settings.__name__}.backend defaults to {declared!r}, not {self.name!r}"
            )


class Registry(Mapping[str, Backend[T]]):
    """The backends of one stage by name; ``default`` names the configuration's default."""

    def __init__(self, stage: str, backends: Iterable[Backend[T]], *, default: str) -> None:
        self.stage = stage
        self.default = default
        self._by_name: dict[str, Backend[T]] = {}
        self._by_options: dict[type[Any], Backend[T]] = {}
        for backend in backends:
            if backend.name in self._by_name or backend.options in self._by_options:
                raise ValueError(f"{stage} backend {backend.name!r} is registered twice")
            self._by_name[backend.name] = backend
            self._by_options[backend.options] = backend
        if default not in self.configurable():
            raise ValueError(f"default {stage} backend {default!r} has no settings")

    def __getitem__(self, name: str) -> Backend[T]:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def plus(self, *backends: Backend[T]) -> Registry[T]:
        """This registry with ``backends`` added (a plug-in's or a test's)."""
        return Registry(self.stage, [*self._by_name.values(), *backends], default=self.default)

    def configurable(self) -> dict[str, type[BackendSettings]]:
        """The backends the configuration can name, with their sections."""
        return {n: b.settings for n, b in self._by_name.items() if b.settings is not None}

    def make(self, options: object) -> T:
        """Build the backend that ``options`` configures (``TypeError`` if none does)."""
        backend = self._by_options.get(type(options))
        if backend is None:
            known = ", ".join(t.__name__ for t in self._by_options)
            name = type(options).__name__
            raise TypeError(f"no {self.stage} backend for {name}; known: {known}")
        return backend.make(options)

    def build(self, section: BackendSettings) -> T:
        """Build the backend a configuration section names."""
        return self.make(section.options())

    def default_section(self) -> BackendSettings:
        """The section of the default backend, all its keys at their defaults."""
        return self.configurable()[self.default].model_validate({})

    def settings_type(self) -> Any:
        """The configuration's type for this stage: the union of the sections, told apart
        by ``backend`` (the default backend's when the key is left out)."""
        tagged = tuple(Annotated[s, Tag(n)] for n, s in self.configurable().items())
        return Annotated[Union[tagged], Discriminator(_backend_of(self.default))]  # noqa: UP007


def _backend_of(default: str) -> Callable[[Any], Any]:
    def backend(value: Any) -> Any:
        if isinstance(value, Mapping):
            return value.get("backend", default)
        return getattr(value, "backend", None)

    return backend
