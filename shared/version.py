"""The project's version: pyproject.toml reads it from here, and every role's ``--version`` prints it."""

import sys

VERSION = "0.1.0"
PYTHON = "%d.%d.%d" % sys.version_info[:3]  # this process's Python, as every role tells god at hello


def minor(python: str) -> str:
    """The minor version of a Python version ("3.12.1" -> "3.12"): what a function by value needs."""
    return ".".join(python.split(".")[:2])


def other_version(peer: str, version: object, ours: str = VERSION) -> str | None:
    """What to warn of when a peer (``"god at coord:5678"``, ``"consumer c1:42 on c1"``) says it
    runs another version of the package than this process: the records both sides pickle
    are the same only within a version. None when the same, or the peer did not say."""
    if not version or version == ours:
        return None
    return f"{peer} runs god-tasks {version}, this process {ours}: run one version on every host"
