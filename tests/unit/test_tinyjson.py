"""runv.tinyjson (the `runv state` path's JSON) against the json package."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runv import tinyjson

pytestmark = pytest.mark.property

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@given(values)
def test_dumps_writes_what_json_dumps_writes(value):
    assert tinyjson.dumps(value) == json.dumps(value, indent=2)


@given(values)
def test_loads_reads_what_json_dumps_wrote(value):
    assert tinyjson.loads(json.dumps(value)) == value
    assert tinyjson.loads(" \n" + json.dumps(value, indent=2) + "\n") == value


def _nonfinite(v) -> bool:
    if isinstance(v, float):
        return v != v or v in (float("inf"), float("-inf"))
    if isinstance(v, list):
        return any(_nonfinite(x) for x in v)
    return isinstance(v, dict) and any(_nonfinite(x) for x in v.values())


@given(st.text(max_size=40) | st.sampled_from(["NaN", "[Infinity]", '"NaN"', "1e999", "{} x", " 1 "]))
def test_loads_takes_what_json_takes_and_refuses_the_rest(text):
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            tinyjson.loads(text)
        return
    if any(c in text for c in ("NaN", "Infinity")) and _nonfinite(expected):  # JSON has no such constants
        with pytest.raises(ValueError):
            tinyjson.loads(text)
        return
    assert tinyjson.loads(text) == expected
