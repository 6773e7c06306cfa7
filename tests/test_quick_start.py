"""The quick start: README.md opens with `make search` and `make test`; the Makefile sets up
.venv once (again when pyproject.toml changes); CI runs exactly `make test`."""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    sections = re.split(r"^## ", text, flags=re.M)
    assert sections[1].startswith("Quick start\n")  # right after the title and its paragraph
    blocks = re.findall(r"```bash\n(.*?)```", sections[1], flags=re.S)
    assert blocks == ["make search\nmake test\n"]


def test_ci_runs_exactly_make_test():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    assert commands == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "make test"]


def dry_run(folder: Path, goal: str) -> list[str]:
    """The commands ``make GOAL`` would run in ``folder``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(["make", "--no-print-directory", "-n", goal, "PYTHON=python3",
                             "ARGS="], cwd=folder, env=env, capture_output=True, text=True,
                            check=True)  # the same under `make test ARGS=... PYTHON=...`
    return [line.strip() for line in result.stdout.splitlines()]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_sets_up_once_and_again_when_pyproject_changes(tmp_path):
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    setup = ["python3 -m venv --clear .venv", "pip install torch==2.13.0",
             'pip install -e ".[dev]"', "touch .venv/.installed"]

    def sets_up(commands):
        text = "\n".join(commands)
        found = [step in text for step in setup]
        assert all(found) or not any(found), commands
        return all(found)

    first = dry_run(tmp_path, "search")
    assert sets_up(first) and first[-1] == ".venv/bin/nasp search"
    test = dry_run(tmp_path, "test")
    assert sets_up(test) and test[-1] == ".venv/bin/python -m pytest -q"

    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / ".installed").touch()
    assert dry_run(tmp_path, "search") == [".venv/bin/nasp search"]
    assert dry_run(tmp_path, "test") == [".venv/bin/python -m pytest -q"]

    later = time.time() + 10
    os.utime(tmp_path / "pyproject.toml", (later, later))
    assert sets_up(dry_run(tmp_path, "search"))
