"""Stopping training cleanly on SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop).

While :class:`StopRequests` is active, the first signal only records itself: the training loop ends
the step in flight, saves it and raises :class:`TrainingInterrupted`; a second signal stops at once.
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any, Optional

__all__ = ["StopRequests", "TrainingInterrupted"]

logger = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequests:
    """While active, SIGINT and SIGTERM only set :attr:`signum` (the loop stops at the end of the
    step); a second one restores the previous handlers and interrupts at once. Outside the main
    thread (where handlers cannot be set) signals keep their usual effect."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum
        logger.warning("%s: stopping at the end of this step (again to stop at once)", signal.Signals(signum).name)

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()
