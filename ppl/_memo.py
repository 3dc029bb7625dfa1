"""Values made once per key and kept, bounded, safe to share between threads: `Memo`."""
from __future__ import annotations

import threading
from typing import Any, Callable


class Memo:
    """``get(key, make)`` returns the value kept for ``key``, else ``make()`` (kept). At most
    ``limit`` values are kept: when full, all are dropped. A key that cannot be hashed (a
    model closing over an array, say) is never kept: its value is made each time. ``make``
    runs outside the lock, so two threads may both make a missing value; either is kept."""

    def __init__(self, limit: int):
        self.limit = limit
        self._values: dict = {}
        self._lock = threading.Lock()

    def get(self, key, make: Callable[[], Any]):
        try:
            hash(key)
        except TypeError:
            return make()
        with self._lock:
            if key in self._values:
                return self._values[key]
        value = make()
        with self._lock:
            if len(self._values) >= self.limit:
                self._values.clear()
            self._values[key] = value
        return value

    def __len__(self) -> int:
        return len(self._values)
