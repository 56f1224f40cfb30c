"""The package's layering, checked by import-linter with the contract in pyproject.toml: a module
that imports from a higher layer (say `media` from `pipelines`) fails here. It runs in its own
process because import-linter reconfigures logging in the process that runs it."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")
ROOT = Path(__file__).resolve().parents[1]
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"


def test_layers_contract_is_kept():
    run = subprocess.run([sys.executable, "-c", LINT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 kept, 0 broken" in run.stdout
