"""The systemd units in scripts/systemd/, started as systemd would start them, without systemd
(PID 1 here is not systemd): what a unit's ``[Service]`` section says of the command, its
environment, its credentials and its directories, turned into an argv, an environment and a
working directory under a root folder of the test's own.

What is covered is what the units use: ``Environment=``, ``EnvironmentFile=`` (``-`` for
optional; its settings win over ``Environment=``, as in systemd), ``LoadCredential=``
(copied 0400, ``%d``), ``StateDirectory=`` (``$STATE_DIRECTORY``, ``%S``),
``WorkingDirectory=``, the specifiers ``%i``, ``%I``, ``%d``, ``%S``, ``%%``, and in
``ExecStart=`` systemd's two expansions: ``${VAR}`` in place, ``$VAR`` alone as a word split
on whitespace (systemd.service(5), "Command lines").
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.support.helpers import REPO

UNITS = REPO / "scripts" / "systemd"
ROOT_PATHS = ("/etc/god", "/var/lib")  # where units point on a host; under the test's root here
BASE_PATH = "PATH=/usr/local/bin:/usr/bin:/bin"  # what systemd gives every service


def unit_text(name: str, *, installed: Path) -> str:
    """A unit file of the repository, its command pointed at installed (a venv: ``/opt/god-tasks``)."""
    template = re.sub(r"@[^.]+\.service$", "@.service", name)
    return (UNITS / template).read_text().replace("/opt/god-tasks", str(installed))


def service(text: str) -> list[tuple[str, str]]:
    """The ``[Service]`` section's settings, in order."""
    out, section = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            out.append((key.strip(), value.strip()))
    return out


def _unescape(instance: str) -> str:
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), instance)


@dataclass
class Started:
    """A unit's command as systemd would run it."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    settings: list[tuple[str, str]]

    def get(self, key: str) -> list[str]:
        """A setting's values, in order (specifiers not expanded in Environment= and ExecStart=)."""
        return [v for k, v in self.settings if k == key]


def start(name: str, root: Path, *, installed: Path) -> Started:
    """The command of unit ``name`` (``consumer@images.service``), its files under root."""
    text = unit_text(name, installed=installed)
    for path in ROOT_PATHS:
        text = text.replace(path, f"{root}{path}")
    instance = name.partition("@")[2].rpartition(".")[0]
    creds = root / "run" / "credentials" / name
    specifiers = {"i": instance, "I": _unescape(instance), "d": str(creds), "S": f"{root}/var/lib", "%": "%"}

    def spec(value: str) -> str:
        return re.sub(r"%(.)", lambda m: specifiers[m.group(1)], value)

    # systemd cuts Environment= and ExecStart= into words (unquoting, C escapes) before it
    # expands specifiers in each: a backslash of %i's survives there
    raw = service(text)
    settings = [(k, v if k in ("Environment", "ExecStart") else spec(v)) for k, v in raw]
    env = dict([BASE_PATH.split("=", 1)])
    from_files: dict[str, str] = {}
    cwd = root
    for key, value in settings:
        if key == "Environment":
            env.update(spec(word).split("=", 1) for word in shlex.split(value))  # type: ignore[misc]
        elif key == "EnvironmentFile":
            file = Path(value.removeprefix("-"))
            if file.exists() or not value.startswith("-"):
                for line in file.read_text().splitlines():
                    if line.strip() and not line.lstrip().startswith("#"):
                        k, _, v = line.partition("=")
                        from_files[k.strip()] = " ".join(shlex.split(v))
        elif key == "LoadCredential":
            cred, _, source = value.partition(":")
            creds.mkdir(parents=True, exist_ok=True)
            if Path(source).exists():  # (systemd fails the unit when it is not)
                shutil.copy(source, creds / cred)
                (creds / cred).chmod(0o400)
            env["CREDENTIALS_DIRECTORY"] = str(creds)
        elif key == "StateDirectory":
            state = Path(specifiers["S"]) / value
            state.mkdir(parents=True, exist_ok=True)
            env["STATE_DIRECTORY"] = str(state)
        elif key == "WorkingDirectory":
            cwd = Path(value)
    env.update(from_files)
    (exec_start,) = [v for k, v in settings if k == "ExecStart"]
    argv: list[str] = []
    for word in map(spec, shlex.split(exec_start)):
        alone = re.fullmatch(r"\$(\w+)", word)
        if alone:
            argv += env.get(alone.group(1), "").split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return Started(argv, env, cwd, settings)
