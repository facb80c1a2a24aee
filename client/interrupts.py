"""`interrupt_if_streaming`, in both of the reference API's forms.

`True` interrupts the running answer and keeps all it produced; `{"last_part":
{"index": i, "part": {...}}}` (or `LastPart`) also says which part the user last saw,
so the interrupted answer is cut there (see `sessionflow.workflows.turn`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from sessionflow.contract import LastPart
from sessionflow.errors import InvalidInput
from sessionflow.json_limits import check_json_depth

FORMS = "True, False, or {'last_part': {'index': <int>, 'part': {...}}}"


def parse_interrupt(value: Any) -> tuple[bool, LastPart | None]:
    """(interrupt?, where to cut) from `interrupt_if_streaming`; `InvalidInput` when it
    is neither form (camelCase `lastPart` is accepted too, as the HTTP API takes it)."""
    check_json_depth(value, "interrupt_if_streaming")
    if isinstance(value, bool):
        return value, None
    if isinstance(value, LastPart):
        return True, value
    if isinstance(value, Mapping) and len(value) == 1:
        [(key, found)] = value.items()
        if key in ("last_part", "lastPart"):
            try:
                return True, LastPart.model_validate(found)
            except ValidationError as err:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in err.errors()
                )
                raise InvalidInput(f"interrupt_if_streaming.last_part: {problems}") from None
    raise InvalidInput(f"interrupt_if_streaming must be {FORMS}, not {type(value).__name__}")
