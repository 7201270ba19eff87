"""A journal whose disk fills while god runs: puts wait unconfirmed, and go through once there is room.

The journal lives on a 1 MiB tmpfs mounted in a mount namespace of its own (``unshare -m``),
so the mount ends with the process that made it, also when the test fails. It needs root
and util-linux's unshare.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import REPO

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                       reason="needs root and unshare to mount a small filesystem"),
]

# Runs inside the namespace, with the tmpfs at argv[1]; prints one JSON line of findings.
SCRIPT = r'''
import json, pickle, sys, threading, time
from pathlib import Path
from god.journal.journal import Journal
from god.rules.broker import Broker
from shared.log import logger


def put(first, payloads):
    """A put as god's API makes it: offered, then confirmed once its commit is in."""
    taken, ticket = b.intake.offer("p", (first, len(payloads), pickle.dumps(payloads), "default", None, 0, None, None, None))
    j.wait(ticket)
    return len(payloads)


disk = Path(sys.argv[1])
errors = []
logger.remove()
logger.add(lambda m: errors.append(str(m)), level="ERROR")
j = Journal(disk / "journal.sqlite3")
j.recover()
j.start()
b = Broker(journal=j)
put(1, list(range(10)))  # confirmed while there is room

filler = disk / "filler"
with open(filler, "wb", buffering=0) as f:  # take every free block
    try:
        while True:
            f.write(b"\0" * 4096)
    except OSError:
        pass

# 200 KiB of payloads: more than the journal can write on a full disk
done = []
t = threading.Thread(target=lambda: done.append(put(11, ["x" * 2048] * 100)), daemon=True)
t.start()
deadline = time.monotonic() + 10
while not errors and time.monotonic() < deadline:
    time.sleep(0.02)
waited_unconfirmed = t.is_alive() and not done

filler.unlink()  # room again: the writer's next retry commits
t.join(10)
j.close()
again = Journal(disk / "journal.sqlite3")
pending = again.recover().pending
again.close()
print(json.dumps({"errors": errors[:1], "waited_unconfirmed": waited_unconfirmed,
                  "confirmed_after": done, "pending": pending}))
'''


def test_a_full_disk_holds_back_confirmations_and_loses_nothing(tmp_path: Path) -> None:
    # Given a journal on a 1 MiB filesystem, with 10 tasks confirmed
    disk = tmp_path / "disk"
    disk.mkdir()
    p = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" -c "$3" "$1"', "sh", str(disk), sys.executable, SCRIPT],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=50,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    found = json.loads(p.stdout.strip().splitlines()[-1])
    # When the disk is full, a put of 100 more waits unconfirmed, and god says why
    assert found["waited_unconfirmed"], found
    assert "cannot write journal" in found["errors"][0] and "confirmations wait" in found["errors"][0], found
    # Then, once there is room, the put is confirmed and every task of both puts is in the journal
    assert found["confirmed_after"] == [100], found
    assert found["pending"] == 110, found
