"""Rendered learner dashboards kept in each portal process, so that a reload costs a lookup, not a rebuild.

The dashboard is the page learners open most and its facts change rarely (a grade, an enrollment,
a new release), so each process keeps the rendered middle of the page (not the layout, the menu
or the open-lab box, which are drawn on every request) under the key (learner, language, view
stamps of the catalog and of the learner; :mod:`academy.stamps`).  A kept copy is used only while:

* every stamp is unchanged: any change to what it shows, by anyone in any process, commits a new
  stamp with it, so the next view builds the page again;
* the clock has not reached the next moment its facts depend on: the earliest deadline, cohort
  start or end still ahead (a deadline that passes turns "not started" into "overdue" and
  releases held results), a minute while a lab-hours condition is still counting, and ten minutes
  at most (a safety net for rows changed by raw SQL outside the portal).

A page that shows a waitlist position is never kept (other learners move it).  The store is a
bounded least-recently-used map per process: at most ``size`` pages (about 30 KB each).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Hashable

MAX_AGE = dt.timedelta(minutes=10)
DEFAULT_SIZE = 512


class KeptPages:
    """A bounded, thread-safe map of rendered pages, each with the moment it stops being valid."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._pages: OrderedDict[Hashable, tuple[str, dt.datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, now: dt.datetime) -> str | None:
        """The page kept under ``key`` if it is still valid at ``now``."""
        with self._lock:
            found = self._pages.get(key)
            if found is None:
                return None
            if now >= found[1]:
                del self._pages[key]
                return None
            self._pages.move_to_end(key)
            return found[0]

    def put(self, key: Hashable, page: str, until: dt.datetime | None, now: dt.datetime) -> None:
        """Keep ``page`` until ``until`` (capped at ``MAX_AGE`` from ``now``); None: do not keep it."""
        if until is None or self.size <= 0:
            return
        until = min(until, now + MAX_AGE)
        if until <= now:
            return
        with self._lock:
            self._pages[key] = (page, until)
            self._pages.move_to_end(key)
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._pages.clear()

    def __len__(self) -> int:
        return len(self._pages)
