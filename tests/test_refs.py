"""The intake's file-ref check on parsed JSON must agree with the JS-model one (refs.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flask_verdant import json_codec
from flask_verdant.refs import is_file_ref, is_parsed_file_ref

_TYPES = st.one_of(
    st.sampled_from(["file", "ref", "File", "file "]),
    st.booleans(),
    st.integers(),
    st.none(),
    st.lists(st.just("file"), max_size=1),
)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text())
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["id", "x", "@@typ"]), inner, max_size=2),
        st.fixed_dictionaries({"@@type": _TYPES}, optional={"id": inner}),
    ),
    max_leaves=8,
)


@given(_VALUES)
def test_the_parsed_check_agrees_with_the_js_model(value: Any) -> None:
    parsed = json_codec.loads(json_codec.dumps(value))
    assert is_parsed_file_ref(parsed) is is_file_ref(parsed)


def test_only_an_object_whose_type_is_the_string_file_is_a_file_ref() -> None:
    assert is_parsed_file_ref({"@@type": "file", "id": "f"})
    assert not is_parsed_file_ref({"@@type": "ref", "id": "f"})
    assert not is_parsed_file_ref([{"@@type": "file"}])
    assert not is_parsed_file_ref("file")
