"""Helpers: working directories made the way `tcplab exercise start` makes them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from exercises.commands import start_exercise
from exercises.grading import Exercise, load_exercise


def workdir(name: str, tmp_path: Path, *, reference: bool = False) -> tuple[Exercise, Path]:
    """A started working directory; with ``reference`` its solution.py is the reference solution."""
    ex = load_exercise(name)
    directory = tmp_path / name
    start_exercise(ex, directory)
    if reference:
        shutil.copyfile(ex.package_dir / "solution" / "solution.py", directory / "solution.py")
    return ex, directory


@pytest.fixture
def make_workdir(tmp_path: Path):
    def make(name: str, *, reference: bool = False) -> tuple[Exercise, Path]:
        return workdir(name, tmp_path, reference=reference)

    return make


@pytest.fixture(autouse=True)
def grading_key(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test signs with its own instructor key (never the user's ~/.config/tcplab/grading.key)."""
    path = tmp_path_factory.mktemp("key") / "grading.key"
    monkeypatch.setenv("TCPLAB_GRADING_KEY", str(path))
    return path
