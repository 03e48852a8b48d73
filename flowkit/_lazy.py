"""Lazy package namespaces: ``from flowkit.solvers import sample_ode`` imports
``flowkit.solvers.ode`` on first use, so importing a package (or one light module inside
it, as the command-line parser does) loads neither torch nor diffusers."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that resolves ``name`` from ``package.exports[name]``.

    Args:
        package: the package's ``__name__``.
        exports: public name -> submodule (relative to ``package``) that defines it. A
            name may not be a submodule's name: importing that submodule would shadow it.
    """
    shadowed = sorted(name for name in exports if name in exports.values())
    if shadowed:
        raise ValueError(f"{package}: exports {shadowed} are also submodule names")

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
