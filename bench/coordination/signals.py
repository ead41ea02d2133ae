"""SIGTERM and SIGINT in a worker: a flag checked between trials (Lightning raises at its next batch), and the
exit status 128 + signal number that the worker leaves with."""

from __future__ import annotations

import signal
import threading


class Terminated(SystemExit):
    """SIGTERM (or SIGINT) reached a worker: it failed its running trial for a retry and exits."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)


class StopFlag:
    """SIGTERM sets the flag instead of killing at an arbitrary point (e.g. in the middle of a journal write);
    Lightning, which chains this handler during a fit, raises at its next batch, the worker loop between trials."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous = None

    def install(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        self.signum = signum

    def check(self) -> None:
        if self.signum is not None:
            raise Terminated(self.signum)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
