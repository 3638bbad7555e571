"""The registry: the one place that lists every coder (``compbench coders``) and every group alias.

Built-in coders register through the same decorator third-party ones use. Third-party packages add a
``compbench.coders`` entry point (``my-coder = my_pkg.coder:MyCoder``); set ``COMPBENCH_NO_PLUGINS=1``
to skip them (the tests do). Group aliases such as ``classical`` expand to every coder that declared
that group, so a plug-in can join a group without touching compbench.
"""

from __future__ import annotations

import importlib
import os
import sys

from .coder import Coder
from .errors import RegistryError, SpecError
from .spec import parse_spec, split_specs

BUILTIN_MODULES = ("compbench.coders.classical", "compbench.coders.external", "compbench.coders.neural",
                   "compbench.coders.prefix", "compbench.coders.submission")

_CODERS: dict[str, type[Coder]] = {}
_SOURCES: dict[str, str] = {}
_GROUPS: dict[str, list[str]] = {}
_loaded = False


def entry_points(group: str):
    """The installed packages' entry points in ``group`` (importlib.metadata costs 25 ms to import,
    so only a registry load that looks for plug-ins pays it)."""
    from importlib.metadata import entry_points as _entry_points

    return _entry_points(group=group)


def register_coder(name: str, *, groups: tuple[str, ...] = (), source: str | None = None):
    """Class decorator: ``@register_coder("zstd", groups=("classical",))``."""

    def deco(cls: type[Coder]) -> type[Coder]:
        key = name.lower()
        where = source or cls.__module__
        if key in _CODERS and _CODERS[key] is not cls:
            raise RegistryError(f"coder name {key!r} is registered twice: by {_SOURCES[key]} and by {where}")
        if key in _GROUPS:
            raise RegistryError(f"coder name {key!r} clashes with the group alias of the same name")
        cls.name = key
        _CODERS[key] = cls
        _SOURCES[key] = where
        for group in groups:
            members = _GROUPS.setdefault(group, [])
            if key not in members:
                members.append(key)
        return cls

    return deco


def unregister_coder(name: str) -> None:
    """Remove a coder (used by tests that register fakes)."""
    _CODERS.pop(name, None)
    _SOURCES.pop(name, None)
    for members in _GROUPS.values():
        if name in members:
            members.remove(name)


def load() -> dict[str, type[Coder]]:
    """Import built-in coder modules, then entry-point plug-ins (once)."""
    global _loaded
    if _loaded:
        return _CODERS
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    if not os.environ.get("COMPBENCH_NO_PLUGINS"):
        for ep in entry_points(group="compbench.coders"):
            try:
                cls = ep.load()
                register_coder(ep.name, source=f"entry point {ep.value}")(cls)
            except RegistryError:
                raise
            except Exception as err:  # a broken plug-in must not take the harness down
                print(f"warning: coder plug-in {ep.name!r} ({ep.value}) failed to load: {err}", file=sys.stderr)
    return _CODERS


def coders() -> dict[str, type[Coder]]:
    return dict(load())


def groups() -> dict[str, list[str]]:
    load()
    result = {g: list(m) for g, m in _GROUPS.items()}
    result["all"] = [n for n, c in _CODERS.items() if getattr(c, "in_all", True)]
    return result


def source(name: str) -> str:
    load()
    return _SOURCES[name]


def get_coder_class(name: str) -> type[Coder]:
    load()
    key = name.lower()
    if key not in _CODERS:
        known = ", ".join(sorted(_CODERS))
        hint = f" ({key!r} is a group; use it in --coders)" if key in groups() else ""
        raise SpecError(f"unknown coder {name!r}{hint}. Known coders: {known}")
    return _CODERS[key]


def make_coder(spec: str) -> Coder:
    """``"zstd:level=19"`` -> a configured :class:`Coder` instance."""
    name, options = parse_spec(spec)
    return get_coder_class(name)(**options)


def expand(specs: str | list[str]) -> list[str]:
    """Expand group aliases in a comma list: ``"classical,identity"`` -> individual specs, in order."""
    items = split_specs(specs) if isinstance(specs, str) else list(specs)
    table = groups()
    out: list[str] = []
    for item in items:
        name, options = parse_spec(item)
        if name in table and name not in _CODERS:
            if options:
                raise SpecError(f"group {name!r} takes no options; give them per coder")
            members = table[name]
        else:
            members = [item]
        for m in members:
            if m not in out:
                out.append(m)
    if not out:
        raise SpecError("no coders given")
    return out
