"""hack/chart_doc.py, loaded as a module (hack/ is not a package)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.cluster.fixtures import REPO


def chart_doc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_doc", REPO / "hack" / "chart_doc.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
