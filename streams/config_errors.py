"""Configuration errors as ``file:line: key: message``, from a key path or from msgspec.

:class:`Where` names a key path of one file (``("centres", "prg", "timezone")`` is
``callcost.toml:14: centres.prg.timezone``); :meth:`Where.invalid` turns msgspec's
``ValidationError`` (``... - at `$.rules[2].band```) into the same form, worded from the
schema's declarations (:mod:`callcost.streams.config_schema`) and the value in the file,
as the hand-written checks worded them. Pure: msgspec and stdlib only.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

import msgspec

from callcost.errors import ConfigError

KeyPath = tuple[str | int, ...]

_AT_RE = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_SEGMENT_RE = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_FIELD_RE = re.compile(r"^Object (contains unknown|missing required) field `([^`]+)`")
_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")


def dotted(path: KeyPath) -> str:
    """``("rules", 2, "band")`` -> ``rules[2].band``."""
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")


class Where:
    """One configuration file's text, to name the line of a key path in errors."""

    def __init__(self, text: str, source: str, doc: Mapping[str, Any]) -> None:
        self.lines = text.splitlines()
        self.source = source
        self.doc = doc

    def raw(self, path: KeyPath) -> Any:
        """The value at ``path`` as the file wrote it (a list, not a tuple; 5, not 5.0)."""
        value: Any = self.doc
        for key in path:
            value = value[key]
        return value

    def fail(self, path: KeyPath, message: str) -> ConfigError:
        """``source:line: dotted.path: message`` (no line when the key is not found)."""
        line = self.line_of(path)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {dotted(path)}: {message}")

    def line_of(self, path: KeyPath) -> int | None:
        """Best-effort line of a key path: track table headers, then find the key."""
        table: list[Any] = []
        counts: dict[str, int] = {}
        best: int | None = None
        want = list(path)
        for no, line in enumerate(self.lines, start=1):
            h = _HEADER_RE.match(line)
            if h:
                parts = [p.strip().strip("\"'") for p in h.group(2).split(".")]
                if h.group(1) == "[[":
                    name = ".".join(parts)
                    idx = counts.get(name, -1) + 1
                    counts[name] = idx
                    table = [*parts, idx]
                else:
                    table = parts
                if table == want[: len(table)] and best is None and len(table) == len(want):
                    best = no
                continue
            k = _KEY_RE.match(line)
            if k:
                kparts = [p.strip().strip("\"'") for p in k.group(1).split(".")]
                full = table + kparts
                if full == want[: len(full)] or want == full[: len(want)]:
                    return no
        return best

    def invalid(self, exc: msgspec.ValidationError, schema: type) -> ConfigError:
        """msgspec's error converting the file to ``schema``, as ``file:line: key: message``."""
        m = _AT_RE.match(str(exc))
        assert m is not None  # the pattern matches any text
        segments = [
            name if name else (-1 if index == "..." else int(index))
            for name, index in _SEGMENT_RE.findall(m.group("path") or "")
        ]
        node = _walk(schema, self.doc, segments)
        field = _FIELD_RE.match(m.group("message"))
        if field:
            table, key = typing.cast(Any, node.base), field.group(2)
            path = (*node.path, key)
            if field.group(1) == "missing required":
                return self.fail(path, table.missing)
            if key in table.refused:
                return self.fail(path, table.refused[key])
            known = ", ".join(sorted(table.__struct_fields__))
            return self.fail(path, f"unknown key (expected one of {known})")
        return self.fail(node.path, node.prefix + _wrong(node))


class _Node:
    """Where a walk along an error's path ended: the key path, the declared type."""

    def __init__(self) -> None:
        self.path: KeyPath = ()
        self.base: Any = None
        self.metas: list[msgspec.Meta] = []
        self.value: Any = None
        #: e.g. ``"rule 'a': "`` inside a table that names its errors (``named_by``)
        self.prefix = ""


def _unwrap(annotation: Any) -> tuple[Any, list[msgspec.Meta]]:
    """``Annotated[X, Meta...] | UnsetType`` -> (X, [Meta...])."""
    metas: list[msgspec.Meta] = []
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation, *extra = typing.get_args(annotation)
            metas.extend(e for e in extra if isinstance(e, msgspec.Meta))
        elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
            (annotation,) = (a for a in typing.get_args(annotation) if a is not msgspec.UnsetType)
        else:
            return annotation, metas


def _fails(value: Any, annotation: Any) -> bool:
    try:
        msgspec.convert(value, annotation)
    except msgspec.ValidationError:
        return True
    return False


def _walk(schema: type, doc: Any, segments: list[str | int]) -> _Node:
    """Follow ``segments`` (field names, list indexes, -1 for msgspec's ``[...]``, a
    dict key it does not name) through the schema and the document together."""
    node = _Node()
    annotation: Any = schema
    node.value = doc
    node.base, node.metas = _unwrap(annotation)
    path: list[str | int] = []
    for seg in segments:
        base, value = node.base, node.value
        if isinstance(seg, str):
            fields = {f.name: f.type for f in msgspec.structs.fields(base)}
            annotation = fields[seg]
            named_by = getattr(base, "named_by", None)
            name = value.get("name") if isinstance(value, Mapping) else None
            if named_by and seg in named_by[1] and isinstance(name, str):
                node.prefix = f"{named_by[0]} {name!r}: "
            value = value.get(seg) if isinstance(value, Mapping) else None
            path.append(seg)
        elif seg == -1:  # a dict key msgspec does not name: the first value that fails
            annotation = typing.get_args(base)[1]
            key = next((k for k, v in value.items() if _fails(v, annotation)), None)
            value = value[key] if key is not None else None
            path.append("..." if key is None else key)
        else:
            args = typing.get_args(base)
            in_tuple = typing.get_origin(base) is tuple
            annotation = args[seg] if in_tuple else args[0]
            value = value[seg]
            if not in_tuple:  # an element of a band is named by the band
                path.append(seg)
        node.value = value
        node.base, node.metas = _unwrap(annotation)
    node.path = tuple(path)
    return node


def _wrong(node: _Node) -> str:
    """What is wrong with ``node.value``, a value of type ``node.base``."""
    base, value = node.base, node.value
    limits: dict[str, Any] = {}
    expect = None
    for meta in node.metas:
        limits.update(
            {k: getattr(meta, k) for k in ("ge", "gt", "lt") if getattr(meta, k) is not None}
        )
        if meta.extra and "expect" in meta.extra:
            expect = meta.extra["expect"]
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return str(getattr(base, "not_a_table", "must be a table")).format(value=value)
    if base is bool:
        return f"must be true or false, not {value!r}"
    if base is str:
        return f"must be a non-empty string, not {value!r}"
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a whole number, not {value!r}"
        return f"must be >= {limits.get('ge', 0)}, not {value!r}"
    if base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, not {value!r}"
        ge = limits.get("ge", 0)
        if not math.isfinite(value) or value < ge:
            return f"must be a finite number >= {ge:g}, not {value!r}"
        if "gt" in limits and value <= limits["gt"]:
            return f"must be above {limits['gt']:g}, not {value!r}"
        return f"must be below {limits['lt']:g}, not {float(value)}"
    return (expect or "must be a table").format(value=value)
