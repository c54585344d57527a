"""Number formatting and JS conversions of flask_verdant.jsvalue against Node itself."""

from __future__ import annotations

import json
import random
import struct
import subprocess
from pathlib import Path
from typing import Any

from flask_verdant.jsvalue import (
    JSTypeError,
    js_stringify,
    number_to_string,
    to_number,
    to_property_key,
    to_string,
)

from .patchgen import HERE


def random_doubles(rng: random.Random, count: int) -> list[float]:
    doubles: list[float] = []
    while len(doubles) < count:
        kind = rng.random()
        if kind < 0.4:  # any bit pattern
            (number,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        elif kind < 0.7:  # around the exponent-notation thresholds
            number = rng.choice([1, -1]) * rng.random() * 10 ** rng.randint(-9, 23)
        else:  # short decimals, integers, big integers
            number = float(
                rng.choice(
                    [round(rng.uniform(-1e3, 1e3), rng.randint(0, 6)), rng.randint(-(2**60), 2**60)]
                )
            )
        if number == number and abs(number) != float("inf"):
            doubles.append(number)
    return doubles


def show(number: float) -> str:
    return "-0" if number == 0 and str(number).startswith("-") else number_to_string(number)


def attempt(fn: Any) -> str:
    try:
        return str(fn())
    except JSTypeError:
        return "!TypeError"


VALUES: list[Any] = [
    "",
    " ",
    "12",
    " 12 ",
    "\t\n\u00a0\ufeff7\u2029",
    "\x1c7",
    "\x857",
    "1_000",
    "1e3",
    "1E+3",
    ".5",
    "5.",
    ".",
    "+.5",
    "-.5e-2",
    "0x1F",
    "0X1f",
    "-0x1",
    "0o17",
    "0b101",
    "0b2",
    "00012",
    "Infinity",
    "-Infinity",
    "+Infinity",
    "infinity",
    "inf",
    "NaN",
    "1e400",
    "-0",
    "٣",
    None,
    True,
    False,
    0,
    -0.0,
    1.5,
    2**53 + 1,
    10**400,
    [],
    [1],
    [1, 2],
    [[1, [2]]],
    [None, None],
    ["a", [None, {}]],
    {},
    {"toString": 1},
    {"valueOf": 1},
    [{"toString": 1}],
]


def test_conversions_match_node(tmp_path: Path) -> None:
    rng = random.Random(5)
    numbers = random_doubles(rng, 5000) + [0.0, -0.0, 1e21, 1e-7, 5e-324, 2**53, 0.1 + 0.2]
    batch = tmp_path / "conversions.json"
    batch.write_text(json.dumps({"numbers": numbers, "values": VALUES}), encoding="utf-8")
    completed = subprocess.run(
        ["node", str(HERE / "js" / "conversions.mjs"), str(batch)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    node = json.loads(completed.stdout)
    ours_numbers = [[number_to_string(n), js_stringify(n)] for n in numbers]
    wrong = [
        (n, a, b) for n, a, b in zip(numbers, ours_numbers, node["numbers"], strict=True) if a != b
    ]
    assert not wrong, wrong[:5]
    ours_values = [
        [
            attempt(lambda v=v: show(to_number(v))),
            attempt(lambda v=v: to_string(v)),
            attempt(lambda v=v: to_property_key(v)),
        ]
        for v in VALUES
    ]
    wrong_values = [
        (v, a, b) for v, a, b in zip(VALUES, ours_values, node["values"], strict=True) if a != b
    ]
    assert not wrong_values, wrong_values
