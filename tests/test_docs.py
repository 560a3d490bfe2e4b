"""docs/RELIABILITY.md stays true: its count is its rows, and every test it names exists."""

from __future__ import annotations

import ast
import re

from conftest import REPO

RELIABILITY = REPO / "docs/RELIABILITY.md"


def fault_rows() -> list[str]:
    """The table rows of the fault matrix, headers and separators left out."""
    rows, previous = [], ""
    for line in RELIABILITY.read_text().splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            rows.append(line)
        if line.startswith("|---"):
            rows.remove(previous)  # the line above a separator is a header
        previous = line
    return rows


def defined_tests() -> set[str]:
    names = set()
    for path in (REPO / "tests").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.add(node.name)
                names.add(f"{path.name}::{node.name}")
    return names


def test_the_count_at_the_top_is_the_number_of_rows():
    count = re.search(r"\*\*(\d+) faults and bad inputs", RELIABILITY.read_text())
    assert count is not None and int(count.group(1)) == len(fault_rows())


def test_every_row_names_a_test_that_exists():
    """The last cell names tests (`test_x` or `test_file.py::test_x`), or says "same test"."""
    known = defined_tests()
    for row in fault_rows():
        cell = row.rstrip(" |").rsplit(" | ", 1)[-1]
        named = re.findall(r"`((?:test_\w+\.py::)?test_\w+)`", cell)
        assert named or cell == "same test", f"no test named in: {row[:80]}"
        assert set(named) <= known, f"unknown test in: {row[:80]}"
