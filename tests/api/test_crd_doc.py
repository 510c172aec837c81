"""docs/crd.md is what hack/crd_doc.py writes from the CRD, so the reference never drifts."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import admission


def _crd_doc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crd_doc", admission.ROOT / "hack" / "crd_doc.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_is_up_to_date() -> None:
    crd_doc = _crd_doc()
    expected = crd_doc.render(admission.load_crd())
    assert crd_doc.DOC_PATH.read_text() == expected, "run: .venv/bin/python hack/crd_doc.py"


def test_every_field_has_a_row() -> None:
    text = (admission.ROOT / "docs" / "crd.md").read_text()
    for path, node in admission.walk(admission.root_schema()):
        if path and "properties" in node:
            assert f"### `{path.replace('.*', '.<key>')}`" in text, path
            for name in node["properties"]:
                assert f"| `{name}` |" in text, f"{path}.{name}"


def test_check_mode_reports_a_stale_reference(tmp_path, monkeypatch, capsys) -> None:
    crd_doc = _crd_doc()
    stale = tmp_path / "crd.md"
    stale.write_text("old\n")
    monkeypatch.setattr(crd_doc, "DOC_PATH", stale)
    monkeypatch.setattr(crd_doc, "ROOT", tmp_path)
    assert crd_doc.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert crd_doc.main([]) == 0
    assert crd_doc.main(["--check"]) == 0
