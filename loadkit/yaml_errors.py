"""YAML files whose mistakes are told by file and line: nothing here knows loadkit's config.

`parse_yaml` refuses a key given twice (YAML would keep only the last one) and keeps the node tree,
`line_of` finds the line of a field path in it, and `describe` turns a pydantic ValidationError into
one `file:line: field.path: message` per problem, an unknown key with the valid ones and "did you mean".

    node, data = parse_yaml(text, path)
    try:
        Model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, node, path, Model), hint="...") from None
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from loadkit.errors import ConfigError

Explain = Callable[[Any, tuple[Any, ...]], str | None]  # (pydantic error, its location) -> a message, or None


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice: YAML would silently keep only the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise _DuplicateKey(
                    f"while reading the mapping that starts on line {node.start_mark.line + 1}", node.start_mark,
                    f"duplicate key {key!r} (first given on line {seen[key]}); YAML would keep only the last one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, path: Path) -> tuple[yaml.Node | None, Any]:
    """(node tree, data) of a YAML document; an empty one is {}. Invalid YAML is a ConfigError at its line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem}",
                          hint="remove or merge one of the two" if isinstance(exc, _DuplicateKey)
                          else "check indentation and quoting on that line") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    return node, {} if data is None else data


def describe(exc: ValidationError, root: yaml.Node | None, path: Path, model: type[BaseModel],
             explain: Explain | None = None) -> str:
    """Every error of `exc` (validating `model` from the document at `root`) as `file:line: field: message`,
    in line order; `explain` may word an error its own way (return None to leave it to the default)."""
    found = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field_path = ".".join(str(p) for p in loc) or "(top level)"
        line = line_of(root, loc)
        where = f"{path}:{line}" if line else str(path)
        message = (explain(err, loc) if explain else None) or _message(err, loc, model)
        found.append((line or 0, f"{where}: {field_path}: {message}"))
    lines = [text for _, text in sorted(found)]
    return lines[0] if len(lines) == 1 else "invalid config:\n  " + "\n  ".join(lines)


def _message(err: Any, loc: tuple[Any, ...], root: type[BaseModel]) -> str:
    if err["type"] == "extra_forbidden":
        model = _model_at(root, loc[:-1])
        if model is None:
            return "unknown key"
        valid = sorted(model.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        maybe = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key (valid here: {', '.join(valid)}{maybe})"
    return str(err["msg"]).removeprefix("Value error, ")


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Which model validates the mapping at `loc` (skipping list indexes and dict keys)."""
    current: Any = model
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if isinstance(current, type) and issubclass(current, BaseModel):
            if part not in current.model_fields:
                return None
            current = current.model_fields[part].annotation
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if origin in (list, dict):
            if not parts:
                return None
            parts.pop(0)  # the index or key
            current = _unwrap(typing.get_args(current)[-1])
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at `loc`; the nearest parent when the key is missing."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return line
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
