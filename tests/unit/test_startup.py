"""What a command loads before it reaches god: the command line alone, not the server, loguru,
rich or asyncio (scripts/bench.py's startup rows time it; these keep the imports from coming
back), and a logger that loads loguru at its first line, set up as asked before that."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Modules a command does not need before its first byte to god (each costs 20-100 ms here).
HEAVY = ("loguru", "asyncio", "rich", "pydantic", "importlib.metadata", "cloudpickle", "sqlite3",
         "god.service", "god.rules.broker", "god.transport.hub", "god.operator.web")


def _loaded_by(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", f"import sys, json\n{code}\n"
                          f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"],
                         capture_output=True, text=True, timeout=30, check=True)
    return list(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("module", ["god.cli", "producer.cli", "consumer.cli", "producer"])
def test_a_command_line_loads_nothing_heavy(module: str) -> None:
    assert _loaded_by(f"import {module}") == []


def test_a_client_made_and_bound_loads_no_loguru_until_it_logs() -> None:
    code = """
from shared.client import GodClient
from shared.config import Settings
from shared.log import logger, setup_logging
setup_logging("producer", level="INFO", sink=lambda m: print("LOGGED", m, end=""))
client = GodClient(Settings(("127.0.0.1", 9), b"k" * 32, "test"), name="p", role="producer")
bound = logger.bind(role="producer", task="t/1")
assert "loguru" not in sys.modules
bound.info("first line")
assert "loguru" in sys.modules
"""
    out = subprocess.run([sys.executable, "-c", "import sys\n" + code], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    # set up before loguru came: the sink, the level and the format apply to the first line
    assert "LOGGED" in out and "INFO" in out and "producer@" in out and "first line" in out
