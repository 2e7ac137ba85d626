"""JSON for `runv state` without the json package, whose decoder imports re and
enum (8 ms of a 20 ms command): CPython's own C scanner and string encoder
(`_json`), and a pretty-printer that writes what `json.dumps(obj, indent=2)`
writes. Errors are ValueError, as json's."""
from __future__ import annotations

import _json

TYPE_CHECKING = False  # typing itself costs `runv state` a few ms
if TYPE_CHECKING:
    from typing import Any


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


class _Context:
    """What the C scanner reads from a json.JSONDecoder."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_no_constant)


_WHITESPACE = " \t\n\r"


def loads(text: str) -> Any:
    scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # duck-types a JSONDecoder
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = scan(text, start)
    except (StopIteration, ValueError, SystemError):
        # The scanner reports errors through json.decoder, which this module
        # avoids importing: let json say what is wrong (a ValueError).
        import json

        json.loads(text)
        raise ValueError("not JSON") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError("extra data after the JSON value")
    return value


def dumps(value: Any, indent: str = "  ") -> str:
    """json.dumps(value, indent=len(indent)), for dicts, lists, strings, ints, bools and None."""
    out: list[str] = []
    _write(value, out, indent, "")
    return "".join(out)


def _write(value: Any, out: list[str], indent: str, prefix: str) -> None:
    if isinstance(value, str):
        out.append(_json.encode_basestring_ascii(value))
    elif value is None or isinstance(value, bool):
        out.append({None: "null", True: "true", False: "false"}[value])
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(float.__repr__(value))
    elif isinstance(value, dict):
        _write_items(list(value.items()), "{}", out, indent, prefix)
    elif isinstance(value, (list, tuple)):
        _write_items(list(value), "[]", out, indent, prefix)
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _write_items(items: list[Any], brackets: str, out: list[str], indent: str, prefix: str) -> None:
    if not items:
        out.append(brackets)
        return
    inner = prefix + indent
    out.append(brackets[0])
    for i, item in enumerate(items):
        out.append(("," if i else "") + "\n" + inner)
        if brackets == "{}":
            key, item = item
            if not isinstance(key, str):
                raise TypeError("keys must be str")
            out.append(_json.encode_basestring_ascii(key) + ": ")
        _write(item, out, indent, inner)
    out.append("\n" + prefix + brackets[1])
