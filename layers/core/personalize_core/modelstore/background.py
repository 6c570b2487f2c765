"""Work on a daemon thread, its outcome in a Future: the model load's overlapped reads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future


def in_background[T](work: Callable[[], T]) -> Future[T]:
    """Run ``work`` on a new daemon thread; the Future holds its result or its exception."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future
