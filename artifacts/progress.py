"""Progress of a transfer (bytes, rate, ETA) written to the log at a bounded rate."""
from __future__ import annotations

import logging
import threading
import time


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


class Progress:
    def __init__(self, label: str, total: int, logger: logging.Logger, interval: float = 2.0) -> None:
        self.label, self.total, self.log, self.interval = label, total, logger, interval
        self.done = 0        # bytes accounted for (fetched or already cached)
        self.fetched = 0     # bytes that came over the network
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last = self._start

    def add(self, n: int, fetched: bool = True) -> None:
        with self._lock:
            self.done += n
            if fetched:
                self.fetched += n
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            self._last = now
        self._report(now)

    def _report(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self._start, 1e-6)
        rate = self.fetched / elapsed
        remaining = max(self.total - self.done, 0)
        eta = f", ETA {remaining / rate:.0f}s" if rate > 0 and not final else ""
        pct = 100.0 * self.done / self.total if self.total else 100.0
        self.log.info(
            "%s: %s / %s (%.0f%%), %s/s%s",
            self.label, human_bytes(self.done), human_bytes(self.total), pct, human_bytes(rate), eta,
        )

    def finish(self) -> float:
        now = time.monotonic()
        self._report(now, final=True)
        return now - self._start
