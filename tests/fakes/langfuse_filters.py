"""Query-parameter parsing and the ``filter`` JSON language of the Langfuse API.

Both read APIs accept simple query parameters (``userId=...``, ``tags=...``)
and a structured ``filter`` parameter (a JSON array of conditions such as
``{"type": "arrayOptions", "column": "tags", "operator": "all of", "value":
[...]}``).  A structured condition replaces the simple parameter for the same
column.  Invalid input produces the same 400 shapes a Langfuse server uses.
"""

from __future__ import annotations

import operator as op
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "ApiError",
    "Column",
    "Condition",
    "Query",
    "combine",
    "equals",
    "field_groups",
    "int_param",
    "param",
    "params",
    "parse_datetime",
    "parse_filter",
    "split_multi",
    "zod_error",
]

Column = Callable[[Any], Any]
Query = Sequence[tuple[str, str]]

_STRING_OPS = {"=", "contains", "does not contain", "starts with", "ends with", "matches"}
_NUMBER_OPS = {"=", ">", "<", ">=", "<="}
_OPERATORS: dict[str, set[str]] = {
    "string": _STRING_OPS,
    "stringOptions": {"any of", "none of"},
    "categoryOptions": {"any of", "none of"},
    "arrayOptions": {"any of", "none of", "all of"},
    "datetime": {">", "<", ">=", "<="},
    "number": _NUMBER_OPS,
    "stringObject": _STRING_OPS | {"is set", "is not set"},
    "numberObject": _NUMBER_OPS,
    "boolean": {"=", "<>"},
    "null": {"is null", "is not null"},
}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": op.eq,
    ">": op.gt,
    "<": op.lt,
    ">=": op.ge,
    "<=": op.le,
}


class ApiError(Exception):
    """An HTTP error answer with a JSON body."""

    def __init__(self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
        super().__init__(body.get("message", status))
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def zod_error(path: str, message: str, code: str = "invalid_type", **extra: Any) -> ApiError:
    """A 400 in the shape of a request-validation failure."""
    issue = {"code": code, "message": message, "path": [path], **extra}
    return ApiError(400, {"message": "Invalid request data", "error": [issue]})


def parse_datetime(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise zod_error(name, "Invalid datetime", code="invalid_string", validation="datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Condition:
    """One filter condition bound to a column accessor."""

    type: str
    column: str
    operator: str
    value: Any
    getter: Column
    key: str | None = None

    def matches(self, row: Any) -> bool:
        value = self.getter(row)
        if self.type in ("stringObject", "numberObject") or (self.key and isinstance(value, dict)):
            value = value.get(self.key) if isinstance(value, dict) else None
        return _MATCHERS[self.type](self, value)


def _match_string(cond: Condition, value: Any) -> bool:
    if cond.operator == "is set":
        return value is not None
    if cond.operator == "is not set":
        return value is None
    text = "" if value is None else value if isinstance(value, str) else orjson.dumps(value).decode()
    needle = str(cond.value)
    if cond.operator == "=":
        return value is not None and text == needle
    if cond.operator == "contains":
        return needle in text
    if cond.operator == "does not contain":
        return needle not in text
    if cond.operator == "starts with":
        return text.startswith(needle)
    if cond.operator == "ends with":
        return text.endswith(needle)
    return needle.lower() in text.lower()  # "matches"


def _match_options(cond: Condition, value: Any) -> bool:
    found = value in cond.value
    return found if cond.operator == "any of" else not found


def _match_array(cond: Condition, value: Any) -> bool:
    have = set(value or [])
    wanted = set(cond.value)
    if cond.operator == "any of":
        return bool(have & wanted)
    if cond.operator == "none of":
        return not have & wanted
    return wanted <= have  # "all of"


def _match_compare(cond: Condition, value: Any) -> bool:
    if value is None:
        return False
    try:
        return _COMPARE[cond.operator](value, cond.value)
    except TypeError:
        return False


def _match_boolean(cond: Condition, value: Any) -> bool:
    same = bool(value) is bool(cond.value)
    return same if cond.operator == "=" else not same


def _match_null(cond: Condition, value: Any) -> bool:
    return (value is None) == (cond.operator == "is null")


_MATCHERS: dict[str, Callable[[Condition, Any], bool]] = {
    "string": _match_string,
    "stringObject": _match_string,
    "stringOptions": _match_options,
    "categoryOptions": _match_options,
    "arrayOptions": _match_array,
    "datetime": _match_compare,
    "number": _match_compare,
    "numberObject": _match_compare,
    "boolean": _match_boolean,
    "null": _match_null,
}


def _invalid(message: str) -> ApiError:
    return ApiError(400, {"message": message, "error": "InvalidRequestError"})


def _coerce_value(kind: str, value: Any, column: str) -> Any:
    if kind in ("stringOptions", "categoryOptions", "arrayOptions"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _invalid(f"Invalid filter value for column '{column}': expected an array of strings")
        return value
    if kind == "datetime":
        if not isinstance(value, str):
            raise _invalid(f"Invalid filter value for column '{column}': expected a datetime string")
        return parse_datetime(value, "filter")
    if kind in ("number", "numberObject"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _invalid(f"Invalid filter value for column '{column}': expected a number")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _invalid(f"Invalid filter value for column '{column}': expected a boolean")
        return value
    return value


def _condition(item: Any, columns: Mapping[str, Column]) -> Condition:
    if not isinstance(item, dict) or not {"type", "column", "operator"} <= item.keys():
        raise _invalid("Invalid filter: each condition needs type, column and operator")
    kind, column, operator = item["type"], item["column"], item["operator"]
    if kind not in _OPERATORS:
        raise _invalid(f"Invalid filter type '{kind}'")
    if operator not in _OPERATORS[kind]:
        raise _invalid(f"Invalid operator '{operator}' for filter type '{kind}'")
    if column not in columns:
        raise _invalid(f"Invalid filter column '{column}'")
    key = item.get("key")
    if kind in ("stringObject", "numberObject") and not key:
        raise _invalid(f"Filter type '{kind}' requires a key")
    value = None if kind == "null" else _coerce_value(kind, item.get("value"), column)
    return Condition(kind, column, operator, value, columns[column], key)


def parse_filter(raw: str | None, columns: Mapping[str, Column]) -> list[Condition]:
    """Parse the ``filter`` query parameter (``None``/empty means no conditions)."""
    if not raw:
        return []
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _invalid("Invalid JSON in filter parameter") from None
    if not isinstance(doc, list):
        raise zod_error("filter", "Expected array, received object")
    return [_condition(item, columns) for item in doc]


def combine(
    simple: list[Condition], advanced: list[Condition], aliases: Mapping[str, str] | None = None
) -> list[Condition]:
    """Simple-parameter conditions, except columns the structured filter also sets."""
    aliases = aliases or {}
    overridden = {aliases.get(c.column, c.column) for c in advanced}
    return [c for c in simple if aliases.get(c.column, c.column) not in overridden] + advanced


# --- simple query parameters ----------------------------------------------------


def params(query: Query, name: str) -> list[str]:
    return [value for key, value in query if key == name]


def param(query: Query, name: str) -> str | None:
    values = params(query, name)
    return values[-1] if values else None


def int_param(query: Query, name: str, default: int, low: int, high: int | None) -> int:
    raw = param(query, name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise zod_error(name, "Expected number, received nan", expected="number", received="nan") from None
    if value < low:
        raise zod_error(name, f"Number must be greater than or equal to {low}", code="too_small", minimum=low)
    if high is not None and value > high:
        raise zod_error(name, f"Number must be less than or equal to {high}", code="too_big", maximum=high)
    return value


def split_multi(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def equals(column: str, value: str, columns: Mapping[str, Column]) -> Condition:
    return Condition("string", column, "=", value, columns[column])


def field_groups(query: Query, groups: tuple[str, ...]) -> set[str] | None:
    raw = param(query, "fields")
    if not raw:
        return None
    return {part.strip() for part in raw.split(",") if part.strip() in groups}
