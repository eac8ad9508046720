"""The setup table names the code that wrote the report beside the code that ran the cells."""

from __future__ import annotations

import re

from ablation import tracking
from ablation.report import build_report


def _row(md: str, name: str) -> str:
    m = re.search(rf"^\| {re.escape(name)} +\| (.*?) +\|$", md, flags=re.M)
    assert m, f"no '{name}' row"
    return m.group(1)


def test_the_report_code_row_is_the_commit_of_the_code_writing_it(store, tmp_path, monkeypatch):
    md = build_report("single", store.uri, tmp_path / "a").read_text()
    assert _row(md, "code commit") == "`0123abc`"  # the fixture's cells
    mine = tracking.git_commit()
    assert mine and mine != "0123abc"
    assert _row(md, "report code") == f"`{mine}` (not the cells' code commit: other code wrote this report from their runs)"

    monkeypatch.setattr(tracking, "git_commit", lambda: "0123abc")  # the same code as the cells'
    md = build_report("single", store.uri, tmp_path / "b").read_text()
    assert _row(md, "report code") == "`0123abc` (the cells' code)"
