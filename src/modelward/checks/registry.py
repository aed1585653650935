"""The check registry: checks register by name; later capabilities add checks by registering classes."""

from __future__ import annotations

import difflib
import re
from importlib import import_module
from importlib.metadata import entry_points
from typing import TypeVar

from modelward.checks.base import Check
from modelward.core.errors import InputError

C = TypeVar("C", bound=type[Check])

_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_REGISTRY: dict[str, type[Check]] = {}
_BUILTIN_MODULES = (
    "modelward.checks.design",
    "modelward.checks.evasion",
    "modelward.checks.privacy",
    "modelward.checks.gateway",
)
_loaded = False


def register(cls: C) -> C:
    """Class decorator: make a check available to requirements under ``cls.name``."""
    name = getattr(cls, "name", "")
    if not _NAME.match(name):
        raise ValueError(f"check name {name!r} must look like 'area.check_name'")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(f"check {name!r} is registered twice ({existing.__qualname__}, {cls.__qualname__})")
    _REGISTRY[name] = cls
    return cls


def _load() -> None:
    """Import the built-in checks and any installed plugins (entry point group ``modelward.checks``)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        import_module(module)
    for entry in entry_points(group="modelward.checks"):
        entry.load()


def all_checks() -> dict[str, type[Check]]:
    """Every registered check by name, sorted."""
    _load()
    return dict(sorted(_REGISTRY.items()))


def get_check(name: str) -> type[Check]:
    """The check class registered under ``name``; an unknown name is a user error with a suggestion."""
    checks = all_checks()
    if name in checks:
        return checks[name]
    close = difflib.get_close_matches(name, list(checks), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise InputError(f"unknown check {name!r}{hint}", field="check")
