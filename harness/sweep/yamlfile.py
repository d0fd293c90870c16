"""Sweep files as YAML with line numbers, and the checker that turns a problem into a message naming
the file, the line and the key (``harness.errors.UserError``). Torch-free."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from harness.errors import UserError

# ---------------------------------------------------------------------------------------------
# YAML with line numbers
# ---------------------------------------------------------------------------------------------


def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """Parse ``text`` into plain Python plus ``lines``: path tuple -> 1-based line of that key/item.

    Duplicate mapping keys are errors (PyYAML would silently keep the last one).
    """
    import yaml

    loader = _yaml_loader()(text)
    lines: dict[tuple, int] = {(): 1}
    try:
        node = loader.get_single_node()
        if node is None:
            raise UserError(f"{source}: line 1: the sweep file is empty")

        def build(node, path: tuple) -> Any:
            if isinstance(node, yaml.MappingNode):
                out: dict[str, Any] = {}
                for key_node, value_node in node.value:
                    key = loader.construct_object(key_node, deep=True)
                    line = key_node.start_mark.line + 1
                    if not isinstance(key, str):
                        raise UserError(f"{source}: line {line}: key {key!r} at {_where(path)} must be a string")
                    if key in out:
                        raise UserError(f"{source}: line {line}: duplicate key '{_where(path + (key,))}'")
                    lines[path + (key,)] = line
                    out[key] = build(value_node, path + (key,))
                return out
            if isinstance(node, yaml.SequenceNode):
                items = []
                for i, item in enumerate(node.value):
                    lines[path + (i,)] = item.start_mark.line + 1
                    items.append(build(item, path + (i,)))
                return items
            return loader.construct_object(node, deep=True)

        return build(node, ()), lines
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{source}: line {line}: malformed YAML: {problem}") from None
    finally:
        loader.dispose()


def _where(path: tuple) -> str:
    """``('tasks', 0, 'datasets')`` -> ``tasks[0].datasets``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class _Checker:
    """Raises ``UserError`` messages that name the file, the line and the key."""

    def __init__(self, source: str, lines: dict[tuple, int]):
        self.source = source
        self.lines = lines

    def line(self, path: tuple) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def error(self, path: tuple, message: str) -> UserError:
        return UserError(f"{self.source}: line {self.line(path)}: {message}")

    def keys(self, value: Any, path: tuple, schema: Mapping[str, str], what: str, required=()) -> dict:
        if not isinstance(value, dict):
            raise self.error(
                path, f"'{_where(path)}' must be a mapping with keys {', '.join(schema)}; got {type(value).__name__}"
            )
        for key in value:
            if key not in schema:
                raise self.error(path + (key,), f"unknown key '{key}' in {what}; valid: {', '.join(sorted(schema))}")
        for key in required:
            if key not in value:
                raise self.error(path, f"missing key '{key}' in {what} ('{_where(path)}')")
        return value

    def integer(self, value: Any, path: tuple, minimum: int, maximum: int | None = None) -> int:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            within = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise self.error(path, f"'{_where(path)}' must be an integer {within}, got {value!r}")
        return value

    def number(self, value: Any, path: tuple) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise self.error(path, f"'{_where(path)}' must be a finite number, got {value!r}")
        return float(value)

    def name_list(self, value: Any, path: tuple, what: str) -> list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.error(path, f"'{_where(path)}' must be a list of {what}, got {type(value).__name__}")
        if not value:
            raise self.error(path, f"'{_where(path)}' is empty: list at least one {what[:-1]}")
        return value
