"""The house plan, enforced: import-linter's contracts (.importlinter) hold, function-level imports counted."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_import_contracts_hold(capsys):
    from importlinter.cli import lint_imports

    code = lint_imports(config_filename=str(ROOT / ".importlinter"), no_cache=True)
    out = capsys.readouterr().out
    assert code == 0, out[-4000:]
    assert "Contracts: 4 kept, 0 broken." in out
