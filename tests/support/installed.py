"""The project as an operator installs it: a wheel built from this checkout, installed into a
fresh venv outside it, on any of the machine's Pythons.

The wheel and each venv are made once for a whole run, also when the run's tests are spread
over several pytest-xdist workers (under locks, in the directory they share), and the venv
gets the wheel's dependencies from the package index as ``pip install`` would.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.helpers import REPO

INSTALL_TIMEOUT_S = 240  # a build or an install with its dependencies, the index reached once
SOURCES = ("pyproject.toml", "README.md", "god", "producer", "consumer", "shared")  # what a wheel is made of


def python_for(version: str) -> str | None:
    """An interpreter of version (``"3.12"``): this one, pyenv's, or one on PATH that runs (a
    pyenv shim of a version not selected does not); None: none here."""
    if version == f"{sys.version_info[0]}.{sys.version_info[1]}":
        return sys.executable
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"), reverse=True)
    candidates += [found] if (found := shutil.which(f"python{version}")) else []
    for python in candidates:
        if subprocess.run([python, "-c", "pass"], capture_output=True, timeout=30).returncode == 0:
            return python
    return None


@contextmanager
def _locked(base: Path, name: str) -> Iterator[None]:
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(argv: list[str], what: str, cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    if done.returncode != 0:
        raise AssertionError(f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def wheel(base: Path) -> Path:
    """The project's wheel, built (once, in base) from a copy of the checkout's sources, as
    ``pip wheel .`` builds it for an operator (setuptools from the index)."""
    with _locked(base, "wheel"):
        dist = base / "dist"
        made = sorted(dist.glob("god_tasks-*.whl"))
        if made:
            return made[0]
        src = base / "src"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir()
        for name in SOURCES:
            path = REPO / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(path, src / name)
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
              "-w", str(dist), str(src)], "pip wheel", cwd=base)
        return sorted(dist.glob("god_tasks-*.whl"))[0]


def venv_with_wheel(base: Path, python: str, version: str) -> Path:
    """A venv of python (once per version, in base) with only the wheel installed; its bin/ folder."""
    built = wheel(base)
    with _locked(base, f"venv-{version}"):  # venvs of two versions are made at once
        venv = base / f"venv-{version}"
        if (venv / "installed").exists():
            return venv / "bin"
        shutil.rmtree(venv, ignore_errors=True)
        # The venv gets no pip of its own (ensurepip took 6 of a venv's 12 s): the tests' pip
        # installs into it for its Python (``--python``), resolving on that interpreter as its
        # own pip would; nothing is compiled at install (3 of its 6 s, rich's and pygments'
        # modules mostly): the roles compile what they import when they first run.
        _run([python, "-m", "venv", "--without-pip", str(venv)], f"venv of Python {version}", cwd=base)
        _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
              "--disable-pip-version-check", "--no-compile", "-q", str(built)],
             f"installing the wheel on Python {version}", cwd=base)
        (venv / "installed").touch()
        return venv / "bin"


def installed_bin(base: Path, version: str) -> Path:
    """The bin/ folder of a venv of Python version with the wheel installed; skips the test
    when this machine has no such Python."""
    python = python_for(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine (pyenv install {version} adds it)")
    return venv_with_wheel(base, python, version)
