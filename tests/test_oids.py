"""OID helpers against docs/protocol.md, "Object ids" (cross-checked with @verdant-web/common)."""

from __future__ import annotations

import re

import pytest

from flask_verdant.oids import (
    DecomposedOid,
    are_oids_related,
    convert_legacy_oid,
    create_oid,
    create_oid_sub_id,
    create_sub_oid,
    decompose_oid,
    get_legacy_dot_oid_sub_id_range,
    get_oid_root,
    get_oid_sub_id_range,
    is_legacy_dot_oid,
    is_root_oid,
    replace_legacy_oids_in_json_string,
    sanitize_fragment,
    unsanitize_fragment,
)


def test_sanitize_replaces_separators_but_not_ampersands() -> None:
    assert sanitize_fragment("a/b:c.d&e") == "a&slash;b&colon;c&dot;d&e"
    assert unsanitize_fragment("a&slash;b&colon;c&dot;d&e") == "a/b:c.d&e"
    # "&" is not escaped, so a literal placeholder does not survive a round trip
    assert unsanitize_fragment(sanitize_fragment("x&dot;y")) == "x.y"


def test_create_oid() -> None:
    assert create_oid("todos", "a.b/c") == "todos/a&dot;b&slash;c"
    assert create_oid("todos", "1", "abcd1234") == "todos/1:abcd1234"
    assert create_oid("todos", "1", "") == "todos/1"  # empty sub-id is falsy


def test_sub_ids_are_eight_hex_chars() -> None:
    assert re.fullmatch(r"[0-9a-f]{8}", create_oid_sub_id())
    assert re.fullmatch(r"todos/x:[0-9a-f]{8}", create_sub_oid("todos/x"))


@pytest.mark.parametrize(
    ("oid", "parts"),
    [
        ("todos/1", DecomposedOid("todos", "1", None)),
        ("todos/1:abc", DecomposedOid("todos", "1", "abc")),
        ("todos/1:abc:def", DecomposedOid("todos", "1", "abc")),
        ("todos/a&dot;b:abc", DecomposedOid("todos", "a.b", "abc")),
        ("weirds/b.list.#:abc", DecomposedOid("weirds", "b", "abc")),
        ("a/b/c:z", DecomposedOid("a", "b/c", "z")),
        ("a&slash;x/y", DecomposedOid("a/x", "y", None)),
        ("todos/1:", DecomposedOid("todos", "1", "")),
    ],
)
def test_decompose_oid(oid: str, parts: DecomposedOid) -> None:
    assert decompose_oid(oid) == parts


def test_decompose_oid_without_slash_is_an_error() -> None:
    with pytest.raises(ValueError):
        decompose_oid("nocollection")


def test_roots_and_relations() -> None:
    assert get_oid_root("todos/1:abc") == "todos/1"
    assert get_oid_root("weirds/b.list.#:abc") == "weirds/b"
    assert is_root_oid("todos/1") and not is_root_oid("todos/1:abc")
    assert are_oids_related("todos/1", "todos/1:x")
    assert not are_oids_related("todos/1", "todos/2:x")


def test_sub_id_ranges() -> None:
    assert get_oid_sub_id_range("todos/1:abc") == ("todos/1:", "todos/1:\uffff")
    assert get_legacy_dot_oid_sub_id_range("todos/1") == ("todos/1.", "todos/1.\uffff")


def test_legacy_oids() -> None:
    assert is_legacy_dot_oid("weirds/b.list.#:abc")
    assert not is_legacy_dot_oid("weirds/b:abc.def")
    assert convert_legacy_oid("weirds/b.list.#:abc") == "weirds/b:abc"
    assert convert_legacy_oid("weirds/b.list") == "weirds/b"


def test_replace_legacy_oids_in_json_string() -> None:
    text = '{"a":"weirds/b.list.#:abc","b":"todos/1:abc","c":"user/x.y:z w","d":"é/x.y:z"}'
    assert replace_legacy_oids_in_json_string(text) == (
        '{"a":"weirds/b:abc","b":"todos/1:abc","c":"user/x.y:z w","d":"é/x.y:z"}'
    )
    # user strings of the same shape are rewritten too (a known hazard)
    assert replace_legacy_oids_in_json_string('["see notes/a.b:c"]') == '["see notes/a.b:c"]'
    assert replace_legacy_oids_in_json_string('["notes/a.b:c"]') == '["notes/a:c"]'
