"""Where taught tasks live while their visitors are on the page, and the line for the fine-tune.

- :class:`LiveTasks`: one process-wide store with hard caps. A visitor holds only an unguessable
  token (kept in their ``gr.State``); their tasks are found by it, so another visitor never sees
  them. Beyond the caps the least recently used task is evicted and its owner told why.
- :class:`OneAtATime`: fine-tunes run one at a time, first come first served; a waiting visitor
  learns their place in the line, and can leave it.
- cancel flags per visitor, which a running fine-tune polls.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .data import TeachError

# Caps. A text switch with its packed planes is ~6 MB (2 bits per parameter of MiniLM's 22.7M,
# plus ~0.4 MB of .tsw bytes); 8 of them are ~50 MB, beside a backbone of ~90 MB and a suite's packed
# switches of ~23 MB. The 2-core CPU Space has 16 GB; the caps keep a crowd of visitors far from it.
MAX_LIVE_TASKS = 8  # tasks in memory, all visitors together
MAX_LIVE_BYTES = 64 << 20  # their bytes (TaughtTask.nbytes), all visitors together
MAX_TASKS_PER_VISITOR = 3  # a visitor's own oldest task makes room for their fourth
WAIT_POLL_S = 0.5  # how often a waiting visitor's place in the line is re-read


class LiveTasks:
    """Taught tasks by ``(visitor token, task name)``, within ``max_tasks`` and ``max_bytes``."""

    def __init__(
        self,
        max_tasks: int = MAX_LIVE_TASKS,
        max_bytes: int = MAX_LIVE_BYTES,
        per_visitor: int = MAX_TASKS_PER_VISITOR,
    ):
        if min(max_tasks, max_bytes, per_visitor) < 1:
            raise ValueError("caps must be >= 1")
        self.max_tasks, self.max_bytes, self.per_visitor = max_tasks, max_bytes, per_visitor
        self._tasks: OrderedDict[tuple[str, str], Any] = OrderedDict()  # TaughtTasks, least recently used first
        self._gone: dict[str, list[str]] = {}  # visitor -> names evicted since they last looked
        self._cancel: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def new_visitor() -> str:
        return secrets.token_urlsafe(16)

    # -- tasks ---------------------------------------------------------------------------------
    def add(self, visitor: str, task) -> list[str]:
        """Keep ``task`` (a :class:`~tswitch.teach.run.TaughtTask`) for ``visitor``; returns the names of
        the tasks evicted to make room, as ``"visitor's own"`` or another visitor's, for the log."""
        evicted = []
        with self._lock:
            self._tasks.pop((visitor, task.name), None)
            own = [key for key in self._tasks if key[0] == visitor]
            while len(own) >= self.per_visitor:
                evicted.append(self._evict(own.pop(0)))
            self._tasks[(visitor, task.name)] = task
            while len(self._tasks) > self.max_tasks or self._bytes() > self.max_bytes:
                oldest = next(iter(self._tasks))
                if oldest == (visitor, task.name):  # the new task alone is over the byte cap
                    break
                evicted.append(self._evict(oldest))
        return evicted

    def _evict(self, key: tuple[str, str]) -> str:
        self._tasks.pop(key)
        self._gone.setdefault(key[0], []).append(key[1])
        return key[1]

    def _bytes(self) -> int:
        return sum(t.nbytes for t in self._tasks.values())

    def get(self, visitor: str, name: str):
        """The visitor's task ``name`` (now the most recently used); :class:`TeachError` if evicted or unknown."""
        with self._lock:
            task = self._tasks.get((visitor, name))
            if task is None:
                if name in self._gone.get(visitor, []):
                    raise TeachError(f"task {name!r} was evicted to free memory for other visitors; teach it again")
                raise TeachError(f"no task {name!r} in this session")
            self._tasks.move_to_end((visitor, name))
            return task

    def remove(self, visitor: str, name: str) -> None:
        """Forget one of the visitor's tasks (not an eviction: nothing is reported)."""
        with self._lock:
            self._tasks.pop((visitor, name), None)

    def tasks(self, visitor: str, suite: str | None = None) -> list:
        """The visitor's live tasks (of ``suite`` when given), oldest first."""
        with self._lock:
            return [t for (v, _), t in self._tasks.items() if v == visitor and (suite is None or t.suite == suite)]

    def evicted(self, visitor: str) -> list[str]:
        """Names of the visitor's tasks evicted since the last call (each reported once)."""
        with self._lock:
            return self._gone.pop(visitor, [])

    def nbytes(self) -> int:
        with self._lock:
            return self._bytes()

    def __len__(self) -> int:
        return len(self._tasks)

    # -- cancel flags --------------------------------------------------------------------------
    def cancel(self, visitor: str) -> None:
        with self._lock:
            self._cancel.add(visitor)

    def clear_cancel(self, visitor: str) -> None:
        with self._lock:
            self._cancel.discard(visitor)

    def cancelled(self, visitor: str) -> bool:
        return visitor in self._cancel


class OneAtATime:
    """A first-come-first-served line in front of one resource (the fine-tune)."""

    def __init__(self) -> None:
        self._line: list[int] = []
        self._tickets = 0
        self._cond = threading.Condition()

    def waiting(self) -> int:
        """Runs in the line, the one running included."""
        with self._cond:
            return len(self._line)

    @contextmanager
    def turn(
        self, on_wait: Callable[[int], object] | None = None, cancelled: Callable[[], bool] | None = None
    ) -> Iterator[float]:
        """Wait for our turn, calling ``on_wait(runs ahead)`` whenever that number is read; yields the
        seconds waited. :class:`~tswitch.teach.run.TeachCancelled` if ``cancelled()`` turns true first."""
        from .run import TeachCancelled

        start = time.monotonic()
        with self._cond:
            ticket = self._tickets
            self._tickets += 1
            self._line.append(ticket)
            try:
                while self._line[0] != ticket:
                    if on_wait is not None:
                        on_wait(self._line.index(ticket))
                    if cancelled is not None and cancelled():
                        raise TeachCancelled("cancelled while waiting: nothing was run")
                    self._cond.wait(WAIT_POLL_S)
            except BaseException:
                self._line.remove(ticket)
                self._cond.notify_all()
                raise
        try:
            yield time.monotonic() - start
        finally:
            with self._cond:
                self._line.remove(ticket)
                self._cond.notify_all()
