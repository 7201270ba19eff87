"""The executor's futures in ``async`` programs: ``await future`` (``TaskFuture.__await__``) and
``async for future in completed(futures)``, on the program's own event loop.

The results thread sets a future's result; a callback hands it to the loop that waits
(``call_soon_threadsafe``), so no thread of the loop ever blocks on god.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import time
from collections.abc import AsyncIterator, Iterable


async def completed(futures: Iterable[cf.Future], timeout: float | None = None  # type: ignore[type-arg]
                    ) -> AsyncIterator[cf.Future]:  # type: ignore[type-arg]
    """The futures as they complete (finished or cancelled), each once, for ``async for``: what
    ``concurrent.futures.as_completed`` gives a thread, given to a coroutine.

    Raises:
        TimeoutError: timeout seconds passed (from the call) with some not complete.
    """
    loop = asyncio.get_running_loop()
    pending = set(futures)
    done: asyncio.Queue[cf.Future] = asyncio.Queue()  # type: ignore[type-arg]
    end = None if timeout is None else time.monotonic() + timeout

    def hand_over(f: cf.Future) -> None:  # type: ignore[type-arg]
        try:
            loop.call_soon_threadsafe(done.put_nowait, f)
        except RuntimeError:  # the loop closed: nobody waits any more
            pass

    for f in pending:
        f.add_done_callback(hand_over)
    for n in range(len(pending), 0, -1):
        left = None if end is None else end - time.monotonic()
        try:
            yield await asyncio.wait_for(done.get(), left)
        except asyncio.TimeoutError:
            raise TimeoutError(f"{n} (of {len(pending)}) futures unfinished") from None
