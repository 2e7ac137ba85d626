"""The package passes its linter and its type checker (configured in pyproject.toml)."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tool(name: str) -> list[str]:
    """The tool beside this Python (the venv's), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    found = here if os.access(here, os.X_OK) else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return [found]


def test_ruff():
    r = subprocess.run([*tool("ruff"), "check", "--no-cache", "--output-format", "concise", "runv", "tests", "bench", "conformance"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy():
    r = subprocess.run([*tool("mypy"), "--no-incremental", "--cache-dir", os.devnull],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
