"""Use counts of weight vectors, for the merged-weights cache's admission rule.

TinyLFU (Einziger, Friedman and Manes, 2017) admits a new entry into a full cache only if it was
used more often than the entry the eviction policy (here LRU) would drop. Counts of the last
``keep`` keys are kept, and every count halves once ``age_every`` uses have been counted, so the
recent past weighs most and a new favourite gets in. Not thread-safe: the engine calls it under its
lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable

KEEP = 4096  # keys whose uses are counted (cache admission; auto's second sight)
AGE_EVERY = 10  # × the cache's size in uses, then every count is halved


class UseCounts:
    """Requests per key, most recent last; ``count`` adds, ``get`` reads, ``clear`` forgets."""

    def __init__(self, age_every: int, keep: int = KEEP):
        if age_every < 1 or keep < 1:
            raise ValueError(f"age_every and keep must be >= 1, got {age_every}, {keep}")
        self.age_every = age_every
        self.keep = keep
        self._uses: OrderedDict[Hashable, int] = OrderedDict()
        self._since_aging = 0

    def count(self, keys: Iterable[Hashable]) -> None:
        """One more use of each key."""
        for key in keys:
            self._uses[key] = self._uses.get(key, 0) + 1
            self._uses.move_to_end(key)
            self._since_aging += 1
        while len(self._uses) > self.keep:
            self._uses.popitem(last=False)
        if self._since_aging >= self.age_every:
            self._since_aging = 0
            for key in list(self._uses):
                self._uses[key] //= 2
                if not self._uses[key]:
                    del self._uses[key]

    def get(self, key: Hashable) -> int:
        return self._uses.get(key, 0)

    def clear(self) -> None:
        self._uses.clear()
        self._since_aging = 0
