"""Coder specs: the ``name:key=value:key=value`` strings used on the command line and in payloads.

``--coders zstd:level=22:long=27,lzma:preset=9e`` is a comma-separated list of specs. Values may be
quoted (``'...'`` or ``"..."``) when they contain ``:``, ``,`` or spaces, as external-command templates do.
Options are typed by the coder's ``Options`` dataclass; :func:`format_spec` writes the canonical form
(every option, in field order) that results record.

Options are of two kinds. *Format* options change the bytes a coder writes (``zstd:level=19``); payload
headers carry them in compact form (non-default only), so each coder's defaults are part of the
payload format. *Locator* options say where something lives or how long to wait (a model path, a
timeout, a binary): declared with :func:`locator`, they never enter a header, so a payload decodes
wherever its artifact sits (the header's fingerprint identifies the artifact).

A value may itself be a coder spec (an option typed :class:`CoderSpec`), written in parentheses,
which nest: ``prefix:inner=(zstd:level=19):store=(lzma:preset=6)``.
"""

from __future__ import annotations

import dataclasses
import typing

from .errors import SpecError

_SPECIAL = set(":,=\"' \t()")


class CoderSpec(str):
    """Type of an option whose value is another coder spec (nested specs, e.g. a prefix coder's
    inner coder). Checked against the registry and stored in compact canonical form."""


def locator(default, **kwargs):
    """A dataclass field for a locator/runtime option: recorded with results, never in payload headers."""
    return dataclasses.field(default=default, metadata={"locator": True}, **kwargs)


def is_locator(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("locator"))


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside quotes and parentheses; both are kept for the caller to strip."""
    parts, buf, quote, depth = [], [], None, 0
    for ch in text:
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            buf.append(ch)
        elif ch == "(":
            depth += 1
            buf.append(ch)
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SpecError(f"unbalanced ')' in coder spec {text!r}")
            buf.append(ch)
        elif ch == sep and depth == 0:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if quote:
        raise SpecError(f"unbalanced {quote} quote in coder spec {text!r}")
    if depth:
        raise SpecError(f"unbalanced '(' in coder spec {text!r}")
    parts.append("".join(buf))
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and ((value[0] == value[-1] and value[0] in "'\"") or (value[0], value[-1]) == ("(", ")")):
        return value[1:-1]
    return value


def split_specs(text: str) -> list[str]:
    """``"zstd:level=3,lzma"`` -> ``["zstd:level=3", "lzma"]`` (empty items dropped)."""
    return [p.strip() for p in _split_top(text, ",") if p.strip()]


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"zstd:level=22:long=27"`` -> ``("zstd", {"level": "22", "long": "27"})`` (values still strings)."""
    parts = _split_top(spec.strip(), ":")
    name = parts[0].strip().lower()
    if not name:
        raise SpecError(f"empty coder name in spec {spec!r}")
    options: dict[str, str] = {}
    for part in parts[1:]:
        if "=" not in part:
            raise SpecError(f"option {part!r} in {spec!r} is not key=value")
        key, value = part.split("=", 1)
        key = key.strip().replace("-", "_")
        if key in options:
            raise SpecError(f"option {key!r} given twice in {spec!r}")
        options[key] = _unquote(value.strip())
    return name, options


def _convert(value: object, typ: object, key: str, coder: str) -> object:
    if typ is CoderSpec:
        from .registry import make_coder  # late: the registry imports this module

        try:
            # Compact, but with its locators: the prefix's own spec must say which model it wraps
            # (gru:model=sagas); headers drop nested locators (format_spec(compact=True)).
            return CoderSpec(make_coder(str(value)).located_spec)
        except SpecError as err:
            raise SpecError(f"{coder}: option {key}: {err}") from None
    if not isinstance(value, str):
        return value
    try:
        if typ is bool:
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if typ is int:
            return int(value, 0)
        if typ is float:
            return float(value)
    except ValueError:
        raise SpecError(f"{coder}: option {key}={value!r} is not a valid {typ.__name__}") from None
    return value


def build_options(options_cls: type, raw: dict[str, object], coder: str) -> object:
    """Instantiate a coder's ``Options`` dataclass from strings or typed values, with clear errors."""
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(fields) or "none"
        raise SpecError(f"{coder}: unknown option(s) {', '.join(unknown)} (known: {known})")
    hints = typing.get_type_hints(options_cls)
    typed = {k: _convert(v, hints.get(k, str), k, coder) for k, v in raw.items()}
    try:
        return options_cls(**typed)
    except (TypeError, ValueError) as err:
        raise SpecError(f"{coder}: {err}") from None


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if isinstance(value, CoderSpec):
        return f"({text})" if any(ch in _SPECIAL for ch in text) else text
    if text == "" or any(ch in _SPECIAL for ch in text):
        quote = "'" if '"' in text else '"'
        if quote in text:
            raise SpecError(f"option value {text!r} contains both quote characters")
        return f"{quote}{text}{quote}"
    return text


def format_spec(name: str, options: object, compact: bool = False) -> str:
    """Canonical spec: the name, then every option in field order (defaults included).

    ``compact=True`` is the payload-header form: format options that differ from their default, and
    no locator options. It makes each coder's defaults part of the payload format (tests pin them)."""
    if options is None or not dataclasses.fields(options):
        return name
    items = [
        f"{f.name}={_fmt(unlocated(getattr(options, f.name)) if compact else getattr(options, f.name))}"
        for f in dataclasses.fields(options)
        if not (compact and (getattr(options, f.name) == f.default or is_locator(f)))
    ]
    return ":".join([name, *items])


def located_spec(name: str, options: object) -> str:
    """The compact spec plus any locator that differs from its default: how a nested spec is kept,
    so that ``prefix:inner=(gru:model=sagas)`` still names its model."""
    if options is None or not dataclasses.fields(options):
        return name
    items = [f"{f.name}={_fmt(getattr(options, f.name))}" for f in dataclasses.fields(options)
             if getattr(options, f.name) != f.default]
    return ":".join([name, *items])


def unlocated(value: object) -> object:
    """A nested spec without its locators (the header form): the artifact, not a path, identifies a model."""
    if isinstance(value, CoderSpec):
        from .registry import make_coder

        return CoderSpec(make_coder(str(value)).header_spec)
    return value


def format_options(options_cls: type, raw: dict[str, str]) -> dict[str, str]:
    """The format options among parsed ``raw`` options (locators dropped): what a header may carry."""
    locators = {f.name for f in dataclasses.fields(options_cls) if is_locator(f)}
    hints = typing.get_type_hints(options_cls)
    out = {}
    for k, v in raw.items():
        if k in locators:
            continue
        if hints.get(k) is CoderSpec:  # a nested spec's own locators are dropped too (a header names no path)
            v = str(unlocated(CoderSpec(v)))
        out[k] = v
    return out
