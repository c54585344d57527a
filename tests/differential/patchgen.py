"""Seeded generator of patch sequences, and the two runners that replay them.

Cases look like what the server folds during compaction (docs/protocol.md, "Patches"): all the
operations of one entity, in order, over its stored snapshot (or over nothing,
``null``, or the rebase seed ``{}``). Most are realistic sequences for an
object or a list entity; a quarter are "chaos" cases with malformed fields,
odd bases and unknown ops, because anything a client sends reaches the fold.

A case is a JSON object; see ``js/apply.mjs`` for the format. Both runners
start from the same JSON text, so both sides see freshly parsed values.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

from flask_verdant.jsvalue import UNDEFINED, PatchError, UnemulatedError, js_stringify
from flask_verdant.patches import COMMON_2, COMMON_3, PatchModel, apply_operations, apply_patch

HERE = Path(__file__).resolve().parent
APPLY_SCRIPT = HERE / "js" / "apply.mjs"
# the store 3.x clients' libraries (oids and conversions are compared against these too)
LIBRARIES = ("common220", "common231")
EXPECTED_VERSIONS = {"common220": "2.2.0", "common231": "2.3.1", "common322": "3.2.2"}
# which real libraries each Python patch model must match
MODEL_LIBRARIES: dict[PatchModel, tuple[str, ...]] = {
    COMMON_2: LIBRARIES,
    COMMON_3: ("common322",),
}

Case = dict[str, Any]
Result = dict[str, Any]


def ref(oid: str) -> dict[str, Any]:
    return {"@@type": "ref", "id": oid}


def fref(file_id: str) -> dict[str, Any]:
    return {"@@type": "file", "id": file_id}


class CaseGenerator:
    """Builds cases from one ``random.Random``; the same seed gives the same cases."""

    FIELDS = ["title", "done", "count", "tags", "meta", "attachment", "notes", "0", "2", "10"]
    ODD_FIELDS = [
        "constructor",
        "toString",
        "length",
        "-1",
        "01",
        "1.5",
        "id",
        "@@type",
        "4294967294",
        "4294967295",
        "undefined",
        "null",
        "é",
        "__proto__",
    ]
    STRINGS = ["", "a", "b", "hello", "0", "1", "last", "first", "ref", "file", "ü\u2028", "\ud800"]
    # names that are not indexes on an array; some shadow the methods applyPatch calls
    ARRAY_NAMES: list[Any] = [
        "length",
        "length",
        "-1",
        "1.5",
        "foo",
        "01",
        2.0,
        "constructor",
        "push",
        "splice",
        "indexOf",
        "lastIndexOf",
        "findIndex",
        "some",
        "forEach",
    ]
    NUMBERS: list[Any] = [
        0,
        1,
        2,
        3,
        -1,
        7,
        1.5,
        -2.5,
        0.1,
        -0.0,
        1e21,
        1e-7,
        2**53 + 1,
        123456789012,
    ]

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.root = self.rng.choice(["todos/doc1", "items/a&dot;b", "weirds/x"])
        self.sub_oids = [f"{self.root}:{self.rng.getrandbits(32):08x}" for _ in range(5)]
        self.file_ids = [f"file-{n}" for n in range(3)]

    # -- values ---------------------------------------------------------
    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def primitive(self) -> Any:
        kind = self.rng.random()
        if kind < 0.35:
            return self.rng.choice(self.STRINGS)
        if kind < 0.7:
            return self.rng.choice(self.NUMBERS)
        if kind < 0.85:
            return self.rng.choice([True, False])
        return None

    def a_ref(self) -> dict[str, Any]:
        return ref(self.rng.choice(self.sub_oids))

    def a_file(self) -> dict[str, Any]:
        return fref(self.rng.choice(self.file_ids))

    def leaf(self) -> Any:
        kind = self.rng.random()
        if kind < 0.45:
            return self.primitive()
        if kind < 0.85:
            return self.a_ref()
        return self.a_file()

    def weird(self) -> Any:
        """Any JSON at all, leaning to values that trip JS conversions."""
        pool: list[Any] = [
            None,
            True,
            False,
            0,
            -0.0,
            1,
            -1,
            2,
            1.5,
            -1.5,
            1e21,
            2**53 + 1,
            10**400,
            "",
            "0",
            "1",
            "-1",
            "1e1",
            " 2 ",
            "0x1f",
            "abc",
            "last",
            "Infinity",
            [],
            [1],
            ["2"],
            [[3]],
            [1, 2],
            [None],
            {},
            {"toString": 1},
            {"valueOf": 2},
            {"@@type": "ref"},
            {"@@type": "file"},
            {"id": self.sub_oids[0]},
            {"@@type": "ref", "id": 5},
            {"a": [1, {"b": None}]},
        ]
        roll = self.rng.random()
        if roll < 0.5:
            return self.rng.choice(pool)
        if roll < 0.8:
            return self.leaf()
        return self.rng.choice(self.NUMBERS)

    def field(self) -> str:
        return self.rng.choice(self.ODD_FIELDS if self.chance(0.1) else self.FIELDS)

    def normalized_object(self) -> dict[str, Any]:
        obj = {self.field(): self.leaf() for _ in range(self.rng.randint(0, 6))}
        if "__proto__" in obj:  # only primitives: a prototype change is not modelled
            obj["__proto__"] = self.rng.choice([1, "x", True])
        return obj

    def normalized_list(self) -> list[Any]:
        make = self.rng.choice([self.primitive, self.a_ref, self.a_file, self.leaf])
        items = [make() for _ in range(self.rng.randint(0, 7))]
        if items and self.chance(0.2):  # a nullable list: null items before a ref to remove
            items.insert(self.rng.randint(0, len(items)), None)
        return items

    def index(self, length: int) -> Any:
        roll = self.rng.random()
        if roll < 0.75:
            return self.rng.randint(0, length + 1)
        if roll < 0.9:
            return self.rng.randint(-length - 2, -1)
        return self.rng.choice([1.5, "1", "-1", None, "x", True, [1], 1e21, -1e21])

    # -- cases ----------------------------------------------------------
    def case(self) -> Case:
        roll = self.rng.random()
        if roll < 0.4:
            base, patches = self.object_sequence()
        elif roll < 0.75:
            base, patches = self.list_sequence()
        else:
            base, patches = self.chaos_sequence()
        case: Case = {
            "patches": patches,
            "mode": self.rng.choice(["operations", "patch"]),
            "collect": self.chance(0.9),
        }
        if base is not UNDEFINED:
            case["base"] = base
        return case

    def start(self, make: Any) -> tuple[Any, list[dict[str, Any]]]:
        roll = self.rng.random()
        if roll < 0.3:
            return UNDEFINED, [{"op": "initialize", "value": make()}]
        if roll < 0.85:
            return make(), []
        if roll < 0.95:
            return {}, []  # the reference rebase's seed for a missing baseline
        return None, []

    def object_sequence(self) -> tuple[Any, list[dict[str, Any]]]:
        base, patches = self.start(self.normalized_object)
        for _ in range(self.rng.randint(1, 12)):
            roll = self.rng.random()
            name: Any = self.field()
            if roll < 0.45:
                patch: dict[str, Any] = {"op": "set", "name": name, "value": self.leaf()}
                if self.chance(0.05):
                    del patch["value"]
            elif roll < 0.65:
                patch = {"op": "remove", "name": name}
            elif roll < 0.68:
                patch = {"op": "delete"}
            elif roll < 0.8:
                patch = {"op": "initialize", "value": self.normalized_object()}
            elif roll < 0.85:
                patch = {"op": "touch"}
            elif roll < 0.9:
                patch = {"op": "set", "name": self.rng.randint(0, 12), "value": self.leaf()}
            else:  # a list op sent at an object: logged and ignored by JS
                patch = {"op": "list-push", "value": self.leaf()}
            if name == "__proto__" and patch.get("op") == "set":
                patch["value"] = self.rng.choice([1, "x", False])
            patches.append(patch)
        return base, patches

    def list_sequence(self) -> tuple[Any, list[dict[str, Any]]]:
        base, patches = self.start(self.normalized_list)
        length = len(base) if isinstance(base, list) else 3
        for _ in range(self.rng.randint(1, 14)):
            patches.append(self.list_patch(length))
            length = max(0, length + self.rng.choice([-1, 0, 1]))
        return base, patches

    def list_patch(self, length: int) -> dict[str, Any]:
        patch = self.list_patch_with_value(length)
        if patch["op"] in ("list-remove", "list-add", "list-move-by-ref") and self.chance(0.08):
            del patch["value"]  # undefined: finds explicit undefineds (and holes, by ref)
        return patch

    def list_patch_with_value(self, length: int) -> dict[str, Any]:
        rng = self.rng
        if self.chance(0.04):  # list.set(i, v) of store 5.x; common 2 does not know it
            return {"op": "list-set", "index": self.index(length), "value": self.leaf()}
        if self.chance(0.005):  # an invalid array length: RangeError
            return {"op": "set", "name": "length", "value": rng.choice([-1, 1.5, "x", 2**32])}
        roll = rng.random()
        if roll < 0.13:
            patch: dict[str, Any] = {"op": "list-push", "value": self.leaf()}
            if self.chance(0.05):
                del patch["value"]
            return patch
        if roll < 0.26:
            patch = {"op": "list-insert", "index": self.index(length)}
            if self.chance(0.3):
                patch["values"] = [self.leaf() for _ in range(rng.randint(0, 3))]
                if self.chance(0.2):
                    patch["value"] = self.leaf()
            else:
                patch["value"] = self.leaf()
            return patch
        if roll < 0.38:
            patch = {"op": "list-delete", "index": self.index(length)}
            if not self.chance(0.1):
                patch["count"] = rng.choice([1, 1, 1, 2, 3, 0, -1, 100, 1.5, None])
            return patch
        if roll < 0.47:
            return {
                "op": "list-move-by-index",
                "from": self.index(length),
                "to": self.index(length),
            }
        if roll < 0.55:
            return {"op": "list-move-by-ref", "value": self.leaf(), "index": self.index(length)}
        if roll < 0.68:
            patch = {"op": "list-remove", "value": self.leaf()}
            only = rng.choice([None, "first", "last", "xyz", "", 0, 1, "absent"])
            if only != "absent":
                patch["only"] = only
            return patch
        if roll < 0.77:
            return {"op": "list-add", "value": self.leaf()}
        if roll < 0.85:
            name = (
                rng.randint(0, length + 3)
                if self.chance(0.8)
                else self.rng.choice(self.ARRAY_NAMES)
            )
            patch = {"op": "set", "name": name, "value": self.leaf()}
            if name == "length":
                patch["value"] = rng.choice(
                    [0, 1, 2, length + 2, -1, 1.5, "2", None, [1], True, "x", 2**32]
                )
            return patch
        if roll < 0.93:
            name = rng.randint(-1, length + 1) if self.chance(0.9) else rng.choice(self.ARRAY_NAMES)
            return {"op": "remove", "name": name}
        if roll < 0.945:
            return {"op": "delete"}
        if roll < 0.98:
            return {"op": "initialize", "value": self.normalized_list()}
        return {"op": "touch"}

    def chaos_sequence(self) -> tuple[Any, list[Any]]:
        rng = self.rng
        base: Any = rng.choice(
            [
                UNDEFINED,
                None,
                5,
                0,
                "abc",
                "",
                True,
                False,
                [],
                {},
                [None, None],
                self.normalized_list(),
                self.normalized_object(),
                [self.weird() for _ in range(4)],
                {"a": {"b": [1, 2]}, "c": [self.a_ref()]},
            ]
        )
        ops = [
            "set",
            "remove",
            "list-push",
            "list-delete",
            "list-move-by-index",
            "list-remove",
            "list-add",
            "list-move-by-ref",
            "list-insert",
            "delete",
            "initialize",
            "touch",
            "list-set",
            "frob",
        ]
        fields = ["name", "value", "index", "count", "from", "to", "only", "values"]
        patches: list[Any] = []
        for _ in range(rng.randint(1, 8)):
            op: Any = rng.choice(ops) if self.chance(0.97) else rng.choice([None, 5, ["set"]])
            patch: dict[str, Any] = {"op": op}
            for key in fields:
                if self.chance(0.5):
                    patch[key] = self.weird()
            if "name" in patch and self.chance(0.5):
                # no huge array index, no prototype change: the port refuses those
                safe = [f for f in self.ODD_FIELDS if f not in ("4294967294", "__proto__")]
                patch["name"] = rng.choice(safe + self.FIELDS)
            if op == "initialize" and isinstance(patch.get("value"), dict):
                patch["value"].pop("__proto__", None)
            if self.chance(0.02):
                patches.append(rng.choice([None, 7, "x", {}]))  # malformed patch
            else:
                patches.append(patch)
        return base, patches


def generate(seed: int, count: int) -> list[Case]:
    """``count`` random cases from ``seed``."""
    generator = CaseGenerator(seed)
    return [generator.case() for _ in range(count)]


# -- runners ------------------------------------------------------------------


def _operations(case: Case) -> list[Any]:
    if case.get("wrap") is False:
        return list(case["patches"])
    return [
        {"oid": "items/doc:0000abcd", "timestamp": f"0001000000000{i:04d}node001", "data": data}
        for i, data in enumerate(case["patches"])
    ]


def run_python(line: str, model: PatchModel = COMMON_2) -> Result:
    """The Python port's answer (with ``model``) for one JSON-encoded case, in the Node format.

    Returns ``{"unemulated": reason}`` when the port refuses the case.
    """
    case = json.loads(line)
    base = case.get("base", UNDEFINED)
    deleted: list[Any] | None = [] if case.get("collect") else None
    result: Result = {"snapshot": None, "deleted": None, "error": None, "partial": None}
    current = base
    try:
        if case.get("mode") == "patch":
            for patch in case["patches"]:
                current = apply_patch(current, patch, deleted, model)
        else:
            current = apply_operations(base, _operations(case), deleted, model)
        result["snapshot"] = js_stringify(current)
    except UnemulatedError as err:
        return {"unemulated": str(err)}
    except PatchError as err:
        result["error"] = {"name": err.js_name, "message": str(err)}
        if case.get("mode") == "patch":
            result["partial"] = js_stringify(current)
    if deleted is not None:
        result["deleted"] = js_stringify(deleted)
    return result


def run_node(
    lines: list[str], tmp_path: Path, libraries: tuple[str, ...] = LIBRARIES
) -> dict[str, Any]:
    """One Node process for the whole batch; returns ``{"versions", "results"}``."""
    batch = tmp_path / "cases.jsonl"
    batch.write_text("\n".join(lines) + "\n", encoding="utf-8")
    completed = subprocess.run(
        ["node", str(APPLY_SCRIPT), str(batch), ",".join(libraries)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=600,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"apply.mjs failed ({completed.returncode}): {completed.stderr[-4000:]}")
    output: dict[str, Any] = json.loads(completed.stdout)
    return output


def encode(case: Case) -> str:
    """One JSON line; ASCII-only so lone surrogates survive the trip to Node."""
    return json.dumps(case, ensure_ascii=True, allow_nan=False)
