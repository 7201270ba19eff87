"""Resources: what a consumer has (``consumer --resources gpu=2,mem=64G``) and what a task needs
(``Executor.options(resources={"gpu": 1})``, ``put(..., resources=)``, ``producer --resources``).

God hands a task only to a consumer with what it needs free, counting exactly what the tasks
leased to its workers hold (god/rules/leases.py), and a task that needs more than any consumer
serving its queue has says so (``fits nowhere``). GPUs are also devices: god gives each GPU
task its own of the consumer's GPU ids, and the worker that runs it sees only those
(``CUDA_VISIBLE_DEVICES``).

On the wire and in god, resources are data: a tuple of (name, amount) pairs, sorted.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

#: Resources as they travel: ((name, amount), ...), sorted by name.
Res = tuple[tuple[str, float], ...]
GPU = "gpu"
MEM = "mem"
CPU = "cpu"
MAX_RESOURCES = 16  # names one task or consumer may give
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_AMOUNT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)i?b?", re.IGNORECASE)


def parse(text: str) -> dict[str, float]:
    """``gpu=2,mem=64G`` as {"gpu": 2, "mem": 68719476736} (K, M, G, T: powers of 1,024).

    Raises:
        ValueError: naming what is wrong.
    """
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, eq, amount = part.partition("=")
        m = _AMOUNT.fullmatch(amount.strip())
        if not eq or m is None:
            raise ValueError(f"resource {part!r} is not NAME=AMOUNT (gpu=1, mem=30G)")
        out[name.strip().lower()] = float(m.group(1)) * _UNITS[m.group(2).lower()]
    return dict(check(out))


def check(given: Any) -> Res:
    """Resources as they travel (a mapping, or pairs), checked; () for none.

    Raises:
        ValueError: a name that is not [a-z][a-z0-9_]{0,31}, an amount that is not a number
            over 0, or more than MAX_RESOURCES names.
    """
    if given is None:
        return ()
    pairs = list(given.items()) if isinstance(given, Mapping) else list(given)
    if len(pairs) > MAX_RESOURCES:
        raise ValueError(f"{len(pairs)} resources: at most {MAX_RESOURCES}")
    out = {}
    for pair in pairs:
        if type(pair) not in (tuple, list) or len(pair) != 2:
            raise ValueError(f"a resource is a name and an amount, not {pair!r}")
        name, amount = pair
        if type(name) is not str or not _NAME.fullmatch(name):
            raise ValueError(f"resource name {name!r}: lowercase letters, digits and _, starting with a letter")
        if type(amount) not in (int, float) or not 0 < amount < math.inf:
            raise ValueError(f"resource {name}: {amount!r} is not a number over 0")
        if name == GPU and amount != int(amount):
            raise ValueError(f"gpu={amount:g}: GPUs are counted whole (a task gets devices of its own)")
        out[name] = float(amount)
    return tuple(sorted(out.items()))


def shown(res: Res | Mapping[str, float]) -> str:
    """``gpu=2, mem=64G``."""
    pairs = res.items() if isinstance(res, Mapping) else res
    return ", ".join(f"{name}={_amount(name, amount)}" for name, amount in pairs) or "nothing"


def _amount(name: str, amount: float) -> str:
    if name == MEM:
        for unit in "TGMK":
            size = _UNITS[unit.lower()]
            if amount >= size and amount % size == 0:
                return f"{int(amount // size)}{unit}"
    return f"{amount:g}"


def lacking(need: Res, have: Mapping[str, float]) -> Res:
    """What of need ``have`` lacks (each as needed): () when it fits."""
    return tuple((name, amount) for name, amount in need if have.get(name, 0.0) + 1e-9 < amount)


def how_many(need: Res, free: Mapping[str, float]) -> int:
    """How many tasks that each need ``need`` fit in ``free`` at once."""
    return min((int((free.get(name, 0.0) + 1e-9) // amount) for name, amount in need), default=0)


_UNSET = object()
_first: Any = _UNSET  # CUDA_VISIBLE_DEVICES as this process started (None: unset)


def see_gpus(gpus: tuple[str, ...] | None) -> None:
    """Make these GPU ids the only ones this process's next task sees (``()``: none; None: as
    the process started, for a task that said nothing of resources, or a consumer without
    GPUs). CUDA reads it when it starts in a process: god gives a worker the same GPUs again
    while they are free, so that one that started keeps them."""
    global _first
    if _first is _UNSET:
        if gpus is None:
            return  # (nothing changed yet)
        _first = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    elif _first is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = _first


# -- what a host has ----------------------------------------------------------------------------


def gpu_ids() -> list[str]:
    """This host's GPUs as CUDA names them: ``CUDA_VISIBLE_DEVICES`` if set, else one per line
    of ``nvidia-smi -L``, else none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def host_memory() -> int:
    """Bytes of memory this host has."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def of_host(given: Mapping[str, float] | None) -> tuple[dict[str, float], list[str]]:
    """What a consumer has: those given (``--resources``), and what is not given found on the
    host: its GPUs and memory. Returns (resources, GPU ids). GPUs given as a number and
    not found are numbered from 0."""
    have = dict(given or {})
    ids = gpu_ids()
    if GPU not in have and ids:
        have[GPU] = float(len(ids))
    if MEM not in have and (mem := host_memory()):
        have[MEM] = float(mem)
    n = int(have.get(GPU, 0))
    ids = ids[:n] if len(ids) >= n else [str(i) for i in range(n)]
    return have, ids
