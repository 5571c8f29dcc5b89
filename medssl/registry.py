"""One small registry used for encoders, methods and losses.

A registry maps a short, user-facing name (what goes into a YAML config) to a class or
factory. Unknown names raise a :class:`KeyError` that lists the valid choices and a
"did you mean ...?" suggestion, so a typo in a config never fails silently.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised when a name is not registered; the message lists the valid choices."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable.
        return str(self.args[0])


class Registry(Generic[T]):
    """Name → object mapping with helpful errors.

    Args:
        kind: what is registered ("encoder", "method", "loss"), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; names are unique."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the object registered as ``name`` or raise :class:`UnknownNameError`."""
        if name not in self._items:
            _load_all()  # registries fill when their packages are imported; make sure they are
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), self._items, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid choices: {', '.join(self.list())}"

    def list(self) -> list[str]:
        """Sorted registered names."""
        _load_all()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            _load_all()
        return name in self._items


ENCODERS: Registry = Registry("encoder")
METHODS: Registry = Registry("method")
LOSSES: Registry = Registry("loss")


def _load_all() -> None:
    """Import the modules that fill the registries (kept lazy so `import medssl` is cheap)."""
    import medssl.encoders  # noqa: F401
    import medssl.losses  # noqa: F401
    import medssl.methods  # noqa: F401


def list_encoders() -> list[str]:
    _load_all()
    return ENCODERS.list()


def list_methods() -> list[str]:
    _load_all()
    return METHODS.list()


def list_losses() -> list[str]:
    _load_all()
    return LOSSES.list()
