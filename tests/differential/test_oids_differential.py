"""flask_verdant.oids against the OID helpers of @verdant-web/common 2.2.0 and 2.3.1."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

from flask_verdant.jsvalue import js_stringify
from flask_verdant.oids import (
    convert_legacy_oid,
    create_oid,
    decompose_oid,
    get_legacy_dot_oid_sub_id_range,
    get_oid_root,
    get_oid_sub_id_range,
    is_legacy_dot_oid,
    is_root_oid,
    replace_legacy_oids_in_json_string,
)

from .patchgen import HERE, LIBRARIES

REALISTIC = [
    "todos/1",
    "todos/1:abcd1234",
    "weirds/b.list.#:abc",
    "weirds/b.list.#.0:abc",
    "items/a&dot;b:0f0f0f0f",
    "a/b/c:z:y",
    "nocollection",
    "",
    ":",
    "/",
    "todos/1:",
    "user notes/a.b:c",
    "é/x.y:z",
    "x/y.z:a b",
    "x/y.z:a\u00a0b",
    "x/y.z:a\x1cb",
    'x/y.z:a"b',
]


def random_texts(seed: int, count: int) -> list[str]:
    """Half free-form strings, half shaped like (legacy) OIDs with odd characters mixed in."""
    rng = random.Random(seed)
    alphabet = [
        "a",
        "b",
        "1",
        "_",
        "/",
        "/",
        ":",
        ":",
        ".",
        ".",
        "#",
        "&dot;",
        "&colon;",
        "&slash;",
        "&",
        ";",
        " ",
        "é",
        "\u2028",
        "\\",
        '"',
    ]

    def piece(low: int = 0) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, 4)))

    texts = []
    for _ in range(count):
        if rng.random() < 0.5:
            texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))))
        else:
            path = "".join("." + piece() for _ in range(rng.randint(0, 3)))
            sub = ":" + piece(1) if rng.random() < 0.8 else ""
            texts.append(rng.choice(["todos", "a_1", "é", ""]) + "/" + piece(1) + path + sub)
    return texts


def attempt(fn: Any) -> dict[str, Any]:
    try:
        return {"value": fn()}
    except ValueError:
        return {"error": "TypeError"}  # JS reads a missing id part and throws TypeError


def describe(text: str) -> dict[str, Any]:
    return {
        "decomposed": attempt(lambda: list(decompose_oid(text))),
        "converted": attempt(lambda: convert_legacy_oid(text)),
        "subIdRange": attempt(lambda: list(get_oid_sub_id_range(text))),
        "legacyRange": list(get_legacy_dot_oid_sub_id_range(text)),
        "root": get_oid_root(text),
        "isRoot": is_root_oid(text),
        "isLegacy": is_legacy_dot_oid(text),
        "created": [create_oid(text, text), create_oid(text, text, text)],
        "replaced": replace_legacy_oids_in_json_string(
            js_stringify({"a": [text, "x"], text: 1}) or ""
        ),
    }


def test_oid_helpers_match_both_versions(tmp_path: Path) -> None:
    texts = REALISTIC + random_texts(7, 2000)
    batch = tmp_path / "oids.json"
    batch.write_text(json.dumps(texts), encoding="utf-8")
    completed = subprocess.run(
        ["node", str(HERE / "js" / "oids.mjs"), str(batch)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    node = json.loads(completed.stdout)
    ours = [describe(text) for text in texts]
    for library in LIBRARIES:
        different = [
            (text, mine, theirs)
            for text, mine, theirs in zip(texts, ours, node[library], strict=True)
            if mine != theirs
        ]
        assert not different, f"{library}: {len(different)} differ, e.g. {different[:3]}"
    # the random strings do exercise the legacy rewrite and the TypeError path
    rewritten = sum(
        1
        for d, t in zip(ours, texts, strict=True)
        if d["replaced"] != js_stringify({"a": [t, "x"], t: 1})
    )
    assert rewritten > 50
    assert sum(1 for d in ours if "error" in d["decomposed"]) > 50
