"""Validation errors that are safe to show: field paths and reasons, never values.

Context may carry secrets, and pydantic's messages quote input values (`input_value=`,
a discriminator's tag) while its error locations name dict keys, which are input too.
Such text reaches HTTP answers, history and streams, so only the names a schema
declares are shown; any other path component (a dict key, an unexpected field) is
replaced by a placeholder.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core.core_schema import ErrorType

PLACEHOLDER = "<key>"
_PYDANTIC_TYPES = frozenset(get_args(ErrorType))


def declared_names(schema: type[BaseModel]) -> set[str]:
    """Every property name (and alias) anywhere in the schema's JSON Schema."""
    try:
        return names_in(schema.model_json_schema())
    except Exception:  # a type with no JSON Schema: then no name is known to be safe
        return set()


def names_in(document: Any, *, parameters: bool = False) -> set[str]:
    """Every name a JSON Schema (or an OpenAPI document) declares: the keys of each
    `properties` and, with `parameters`, the `name` of each OpenAPI parameter (an
    object with `name` and `in`)."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                names.update(k for k in properties if isinstance(k, str))
            if parameters and isinstance(node.get("name"), str) and "in" in node:
                names.add(node["name"])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(document)
    return names


def describe(err: ValidationError, schema: type[BaseModel]) -> str:
    """`field.sub: reason; ...` with undeclared path parts shown as `<key>`."""
    return describe_errors(
        err.errors(include_input=False, include_url=False), declared_names(schema)
    )


def describe_errors(errors: Iterable[Mapping[str, Any]], known: Collection[str]) -> str:
    """`describe` for pydantic error dicts (`ValidationError.errors()`, FastAPI's
    `RequestValidationError.errors()`), given the names the schema declares."""
    problems: list[str] = []
    for error in errors:
        parts = [
            str(part) if isinstance(part, int) or part in known else PLACEHOLDER
            for part in error["loc"]
        ]
        where = ".".join(parts) or "value"
        reason = "unexpected field" if error["type"] == "extra_forbidden" else _reason(error)
        problems.append(f"{where}: {reason}")
    return "; ".join(dict.fromkeys(problems))


def _reason(error: Any) -> str:
    """pydantic's message for the error type, without anything the input said.

    Messages of a few types quote the input (`union_tag_invalid` names the tag it
    found, `literal_error` may): for those, the type name says enough."""
    quoting = ("union_tag_invalid", "union_tag_not_found", "literal_error", "enum")
    # An `error` in the context is an exception's own text (a validator's ValueError,
    # a parser's complaint, a mapping's failure), which may quote the input; a type
    # pydantic does not define is a custom error whose message may say anything.
    if (
        error["type"] in quoting
        or error["type"] not in _PYDANTIC_TYPES
        or "error" in (error.get("ctx") or {})
    ):
        return str(error["type"]).replace("_", " ")
    return str(error["msg"])
