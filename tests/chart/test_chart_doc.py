"""docs/chart.md lists every value of the chart as hack/chart_doc.py writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.chart import docs


def test_values_reference_is_up_to_date() -> None:
    chart_doc = docs.chart_doc()
    current = chart_doc.DOC_PATH.read_text()
    schema = json.loads(chart_doc.SCHEMA_PATH.read_text())
    values = yaml.safe_load(chart_doc.VALUES_PATH.read_text())
    assert chart_doc.render(current, schema, values) == current, (
        "run: .venv/bin/python hack/chart_doc.py"
    )


def test_every_value_has_a_row() -> None:
    chart_doc = docs.chart_doc()
    text = chart_doc.DOC_PATH.read_text()
    schema = json.loads(chart_doc.SCHEMA_PATH.read_text())
    for path, node in chart_doc.leaves(schema):
        assert f"| `{path}` |" in text, path
        assert node.get("description"), path


def test_defaults_come_from_values_yaml() -> None:
    chart_doc = docs.chart_doc()
    text = chart_doc.DOC_PATH.read_text()
    assert "| `operator.replicas` | integer | `2` |" in text
    assert "| `gateway.auth.allowAnonymous` | boolean | `false` |" in text


def test_check_mode_reports_a_stale_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    chart_doc = docs.chart_doc()
    stale = tmp_path / "chart.md"
    stale.write_text(f"# title\n\nprose\n\n{chart_doc.BEGIN}\nold\n{chart_doc.END}\n\nmore prose\n")
    monkeypatch.setattr(chart_doc, "DOC_PATH", stale)
    monkeypatch.setattr(chart_doc, "ROOT", tmp_path)
    assert chart_doc.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert chart_doc.main([]) == 0
    assert chart_doc.main(["--check"]) == 0
    text = stale.read_text()
    assert text.startswith("# title\n\nprose\n\n")
    assert text.endswith("\n\nmore prose\n")
    assert "| `operator.replicas` |" in text
