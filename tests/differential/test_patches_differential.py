"""flask_verdant.patches against the real ``applyPatch``/``applyOperations``.

Every case runs through the Python port's common 2 model and
``@verdant-web/common`` 2.2.0 and 2.3.1 (store 3.x), and through its common 3
model and ``@verdant-web/common`` 3.2.2 (store 5.x), in one Node process per
batch; the ``JSON.stringify`` text of
the result, the deleted refs, the error (class and message) and, for a throw in
``patch`` mode, the partly mutated base must all be identical. Node and the
npm packages (``npm ci``) are required: without them these tests fail.

Set ``VERDANT_DIFF_SEED`` to explore other random sequences.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flask_verdant.patches import COMMON_2, COMMON_3, PatchModel

from .patchgen import (
    EXPECTED_VERSIONS,
    MODEL_LIBRARIES,
    Case,
    CaseGenerator,
    Result,
    encode,
    fref,
    ref,
    run_node,
    run_python,
)

SEED = int(os.environ.get("VERDANT_DIFF_SEED", "20240611"))
QUICK_COUNT = 300
FULL_COUNT = 5000


MODELS = pytest.mark.parametrize("model", [COMMON_2, COMMON_3])


def differences(
    lines: list[str], ours: list[Result], node: dict[str, Any], model: PatchModel
) -> list[str]:
    """Readable descriptions of every case where Python and a JS version disagree."""
    found = []
    for library in MODEL_LIBRARIES[model]:
        for line, mine, theirs in zip(lines, ours, node["results"][library], strict=True):
            if "unemulated" not in mine and mine != theirs:
                found.append(f"{library}: {line}\n  python: {mine}\n  js:     {theirs}")
    return found


def compare(
    cases: list[Case], tmp_path: Path, model: PatchModel
) -> tuple[list[Result], dict[str, Any]]:
    """Run ``cases`` on both sides and fail with the first differences, if any."""
    lines = [encode(case) for case in cases]
    ours = [run_python(line, model) for line in lines]
    libraries = MODEL_LIBRARIES[model]
    node = run_node(lines, tmp_path, libraries)
    assert node["versions"] == {library: EXPECTED_VERSIONS[library] for library in libraries}
    found = differences(lines, ours, node, model)
    assert not found, f"{len(found)} differences, first ones:\n" + "\n".join(found[:5])
    return ours, node


def comparable_random_cases(seed: int, count: int, model: PatchModel) -> list[Case]:
    """``count`` random cases that the port does not refuse (it almost never does)."""
    generator = CaseGenerator(seed)
    cases: list[Case] = []
    refused = 0
    while len(cases) < count:
        case = generator.case()
        if "unemulated" in run_python(encode(case), model):
            refused += 1
        else:
            cases.append(case)
    assert refused <= count // 100, f"the generator produced {refused} refused cases"
    return cases


def outcomes(results: list[Result]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for result in results:
        error = result["error"]
        counts["error:" + error["name"] if error else "value"] += 1
        if result["snapshot"] is None and not error:
            counts["undefined"] += 1
        if result["deleted"] not in (None, "[]"):
            counts["deleted refs"] += 1
        if (
            result["snapshot"]
            and result["snapshot"].startswith("[")
            and "null" in result["snapshot"]
        ):
            counts["null in a list"] += 1
    return counts


def case(base: Any, *patches: Any, mode: str = "operations", collect: bool = True) -> Case:
    built: Case = {"patches": list(patches), "mode": mode, "collect": collect}
    if base is not _UNDEFINED:
        built["base"] = base
    return built


_UNDEFINED = object()
A, B, C, X, Z = (ref(x) for x in "abcxz")

FIXED_CASES: list[Case] = [
    # the known test vectors, row by row
    case([fref("a"), fref("b")], {"op": "list-remove", "value": fref("a")}),
    case([A, 1, A], {"op": "list-remove", "value": A}),
    case([None, A], {"op": "list-remove", "value": A}),
    case([1, 2, 1, 1], {"op": "list-remove", "value": 1, "only": "first"}),
    case([1, 2, 1, 1], {"op": "list-remove", "value": 1, "only": "last"}),
    case([1, 2, 1, 1], {"op": "list-remove", "value": 1}),
    case([1, 2, 1, 1], {"op": "list-remove", "value": 1, "only": "xyz"}),
    case([fref("a")], {"op": "list-add", "value": fref("a")}),
    case([A], {"op": "list-add", "value": A}),
    case([1], {"op": "list-insert", "index": 0, "value": 0}),
    case([1], {"op": "list-insert", "index": 1, "values": [2, 3]}),
    case([1], {"op": "list-insert", "index": 0, "value": 9, "values": [2, 3]}),
    case([1], {"op": "list-insert", "index": 0, "value": False, "values": [False]}),
    case([1, 2, 3], {"op": "list-insert", "index": -1, "value": 9}),
    case([A, B, C], {"op": "list-delete", "index": 0, "count": 2}),
    case([1, 2, 3], {"op": "list-delete", "index": 0}),
    case([A, B, C], {"op": "list-move-by-ref", "value": Z, "index": 0}),
    case([1, 2], {"op": "list-move-by-index", "from": 5, "to": 0}),
    case(_UNDEFINED, {"op": "set", "name": "a", "value": 1}),
    case(None, {"op": "set", "name": "a", "value": 1}),
    case(
        _UNDEFINED,
        {"op": "initialize", "value": {"a": 1}},
        {"op": "set", "name": "b", "value": X},
        {"op": "set", "name": "b", "value": X},
    ),
    case({"a": X, "b": fref("y"), "c": 1}, {"op": "delete"}),
    case({"a": 1}, {"op": "list-push", "value": 1}),
    case([1], {"op": "set", "name": 3, "value": "z"}),
    case([1, 2, 3], {"op": "remove", "name": 1}),
    case([1, 2, 3], {"op": "remove", "name": 1}, {"op": "list-remove", "value": None}),
    case([A, 1, B], {"op": "remove", "name": 1}, {"op": "list-remove", "value": B}),
    case(5, {"op": "set", "name": "a", "value": 1}),
    case("abc", {"op": "list-push", "value": 1}),
    case({}, {"op": "frob"}),
    case({"a": 1}, {"op": "touch"}),
    case({"x": 1}, {"op": "initialize", "value": [1, {"a": [2]}]}),
    case({"a": 1}, {"op": "set", "name": "a"}),
    # further JS corners
    case(
        {"b": 1, "a": 2}, *({"op": "set", "name": k, "value": 0} for k in ["10", "2", "-1", "01"])
    ),
    case({"a": 1, "b": 2}, {"op": "remove", "name": "a"}, {"op": "set", "name": "a", "value": 3}),
    case(
        {"x": 1}, *({"op": "set", "name": k, "value": k} for k in [4294967295, 4294967294, 2**53])
    ),
    case({"1": A, "a": B, "0": C}, {"op": "delete"}),
    case([1, 2, 3], {"op": "remove", "name": 0}, {"op": "list-move-by-ref", "index": 2}),
    case([1, 2, 3], {"op": "remove", "name": 0}, {"op": "delete"}),
    case([1, A], {"op": "set", "name": "-1", "value": A}, {"op": "remove", "name": -1}),
    case([1, 2, 3], {"op": "set", "name": "length", "value": "1"}),
    case([1], {"op": "set", "name": "length", "value": 1.5}),
    case([1], {"op": "set", "name": "length", "value": [3]}),
    case([1], {"op": "remove", "name": "length"}),
    case("abc", {"op": "set", "name": 0, "value": "x"}),
    case("abc", {"op": "remove", "name": 9}, {"op": "remove", "name": 1}),
    case(False, {"op": "remove", "name": "a"}, {"op": "set", "name": "a", "value": 1}),
    case(5, {"op": "set", "name": "__proto__", "value": {}}),
    case({"__proto__": A}, {"op": "set", "name": "__proto__", "value": 1}),
    case({}, {"op": "set", "name": "__proto__", "value": 1}, {"op": "remove", "name": "__proto__"}),
    case(_UNDEFINED, {"op": "initialize", "value": {"__proto__": 1, "a": [1, {"b": 2}]}}),
    case([1, 2, 3], {"op": "list-insert", "index": "1", "values": "ab"}),
    case([1, 2, 3], {"op": "list-insert", "index": None, "values": {}}),
    case([1, 2, 3], {"op": "list-insert", "index": 1, "values": True}),
    case([1, 2, 3], {"op": "list-delete", "index": -1, "count": 5}),
    case([A, B], {"op": "list-delete", "index": "0", "count": "2"}),
    case([A, B], {"op": "list-delete", "index": 1.7, "count": 1}),
    case([1, 2, 3], {"op": "list-move-by-index", "from": -1, "to": -9}),
    case([], {"op": "list-move-by-ref", "value": A, "index": 0}),
    case([1, 2], {"op": "list-move-by-ref", "value": 2, "index": 0}),
    case([1, "x", A], {"op": "list-remove", "value": {"@@type": "ref"}}),
    case([1, fref("q"), A], {"op": "list-remove", "value": ref("q")}),
    case([A, 1, None, A], {"op": "list-remove", "value": A, "only": "last"}),
    case([0, -0.0, 1], {"op": "list-remove", "value": 0}),
    case([1, True, "1"], {"op": "list-remove", "value": True}, {"op": "list-add", "value": 1}),
    case([1, 2], {"op": "list-push"}, {"op": "list-add"}, {"op": "list-remove", "only": 1}),
    case([1, 2**53 + 1], {"op": "list-remove", "value": 2**53}),
    case([10**400, 1e21, 1e-7, -0.0, 0.1], {"op": "touch"}),
    case(["\ud800", "é\u2028\x1f"], {"op": "list-add", "value": "\ud800"}),
    case({}, {"op": "set", "name": {"toString": 1}, "value": 1}),
    case({}, {"op": "set", "name": [1, [2, None]], "value": 1}),
    case({}, {"op": "list-set", "index": 0, "value": 1}),
    case({}, {"op": {"a": 1}}),
    case({}, None, mode="patch"),
    case(None, {"op": "frob"}),
    case([1, 2, 3], {"op": "remove", "name": 1}, {"op": "list-remove", "value": A}, mode="patch"),
    case([A, None, A], {"op": "list-remove", "value": A}, mode="patch"),
    case(
        {"a": A},
        {"op": "remove", "name": "a"},
        {"op": "set", "name": "a", "value": B},
        collect=False,
    ),
    {
        "patches": [{"data": {"op": "set", "name": "a", "value": 1}}, None],
        "wrap": False,
        "base": {},
    },
    {"patches": [{"nodata": 1}], "wrap": False, "base": {}},
    # list-set (store 5.x list.set) and the list-remove rules of common 3.2.2
    case([1, A, 3], {"op": "list-set", "index": 1, "value": B}),
    case([1], {"op": "list-set", "index": 3, "value": fref("f")}),
    case([1, 2], {"op": "list-set", "index": "length", "value": 0}),
    case([1, 2], {"op": "list-set", "index": -1, "value": A}, {"op": "list-set", "index": -1}),
    case({"a": A}, {"op": "list-set", "index": "a", "value": 1}),
    case(_UNDEFINED, {"op": "list-set", "index": 0, "value": 1}),
    case([A, B], {"op": "remove", "name": 0}, {"op": "list-set", "index": 0, "value": C}),
    case([fref("a"), fref("b"), fref("a")], {"op": "list-remove", "value": fref("a")}),
    case([fref("a"), A, fref("a")], {"op": "list-remove", "value": fref("a"), "only": "last"}),
    case([None, A, None, A], {"op": "list-remove", "value": A}),
    case([A, None, A], {"op": "list-remove", "value": A, "only": "last"}),
    case([1, A, B], {"op": "remove", "name": 1}, {"op": "list-remove", "value": B}),
    case([fref("a"), ref("a")], {"op": "list-remove", "value": ref("a")}),
    case([1, {"id": "a"}, A], {"op": "list-remove", "value": {"@@type": "ref"}}),
    case([None, fref("x")], {"op": "list-remove", "value": fref("x")}, mode="patch"),
]


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def test_fixed_vectors_match_common_2(tmp_path: Path) -> None:
    ours, node = compare(FIXED_CASES, tmp_path, COMMON_2)
    assert not [result for result in ours if "unemulated" in result]
    # spot-check that the vectors exercise what they claim to
    assert node["results"]["common220"][2]["error"]["name"] == "TypeError"
    assert node["results"]["common231"][0]["snapshot"] == _compact([fref("a"), fref("b")])
    list_set = FIXED_CASES.index(case([1, A, 3], {"op": "list-set", "index": 1, "value": B}))
    assert node["results"]["common231"][list_set]["error"]["message"] == (
        "Unsupported patch operation: list-set"
    )


def test_fixed_vectors_match_common_3(tmp_path: Path) -> None:
    """Store 5.x's rules: list-set applies, file refs are removable, null items are skipped."""
    ours, node = compare(FIXED_CASES, tmp_path, COMMON_3)
    assert not [result for result in ours if "unemulated" in result]
    results = node["results"]["common322"]
    assert results[0]["snapshot"] == _compact([fref("b")])
    assert results[2] == {
        "snapshot": "[null]",
        "deleted": _compact([A]),
        "error": None,
        "partial": None,
    }
    list_set = FIXED_CASES.index(case([1, A, 3], {"op": "list-set", "index": 1, "value": B}))
    assert results[list_set]["snapshot"] == _compact([1, B, 3])
    assert results[list_set]["deleted"] == _compact([A])


@MODELS
def test_the_comparison_detects_a_difference(tmp_path: Path, model: PatchModel) -> None:
    cases = FIXED_CASES[:3]
    lines = [encode(c) for c in cases]
    ours = [run_python(line, model) for line in lines]
    node = run_node(lines, tmp_path, MODEL_LIBRARIES[model])
    ours[1] = {**ours[1], "snapshot": "[1,1]"}
    ours[2] = {**ours[2], "error": {"name": "RangeError", "message": "tampered"}}
    assert len(differences(lines, ours, node, model)) == 2 * len(MODEL_LIBRARIES[model])


def test_the_models_differ_where_the_libraries_do() -> None:
    """One model for both lines would be wrong for one of them (docs/protocol.md, Store 5.x)."""
    line = encode(case([fref("a"), 1], {"op": "list-remove", "value": fref("a")}))
    assert run_python(line, COMMON_2)["snapshot"] == _compact([fref("a"), 1])
    assert run_python(line, COMMON_3)["snapshot"] == "[1]"


@MODELS
def test_random_sequences_quick(tmp_path: Path, model: PatchModel) -> None:
    ours, _ = compare(comparable_random_cases(SEED, QUICK_COUNT, model), tmp_path, model)
    counts = outcomes(ours)
    assert counts["value"] > QUICK_COUNT // 2
    assert counts["error:TypeError"] and counts["error:Error"] and counts["deleted refs"]


@pytest.mark.slow
@MODELS
@pytest.mark.parametrize("seed", [SEED + 1, SEED + 2])
def test_random_sequences_full(tmp_path: Path, seed: int, model: PatchModel) -> None:
    """The issue's bar: 5,000 random sequences per client-library version."""
    cases = comparable_random_cases(seed, FULL_COUNT, model)
    ours, node = compare(cases, tmp_path, model)
    for library in MODEL_LIBRARIES[model]:
        assert len(node["results"][library]) == FULL_COUNT
    counts = outcomes(ours)
    for outcome in ("error:TypeError", "error:Error", "error:RangeError", "undefined"):
        assert counts[outcome] >= 5, counts
    assert counts["deleted refs"] > FULL_COUNT // 5, counts
    assert counts["null in a list"] > FULL_COUNT // 20, counts
