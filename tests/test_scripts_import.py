"""Every script under scripts/ imports cleanly (a script that no test runs can still break when
a module it borrows from changes): each is loaded as a module, its ``main`` guard not run, and
a runnable one has its ``main``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.parametrize("path", sorted(SCRIPTS.glob("*.py")), ids=lambda p: p.name)
def test_script_imports(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SCRIPTS))  # (as when the script itself is run)
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    if 'if __name__ == "__main__"' in path.read_text():
        assert callable(getattr(module, "main", None)), f"{path.name} has no main()"
