"""Whether a SQLite audit file is still the file at its path: ``FileWatch``.

SQLite keeps writing to a file it has open after the file is removed, moved or replaced:
its directory ``rm -r``'d while serving, 5,936 requests were answered 200 into an
unlinked inode nobody could read again (issue 13). ``FileWatch`` remembers the
``(device, inode)`` of the file the log opened and says when the path no longer leads to
it. The audit log asks after each commit (``AuditLog._store``) and the maintenance thread
asks every ``sinks.CHECKPOINT_S`` while the log is idle.

Why after each commit, not only from the thread: a check every 0.5 s leaves half a second
of acknowledged records in a file that is gone; after the commit, a record written into
a lost file is detected before it is acknowledged, and goes to the spool as well (the
flush skips it where it is stored already). The check is one ``stat`` of the path, 2 µs
p50 alone; a 1-row ``record()`` took 83-94 µs p50 with it and 79-90 µs without, in
interleaved runs on 2 shared cores (+3-6 µs, 4-7%; a served request takes milliseconds).
"""

from __future__ import annotations

import os
from pathlib import Path


class FileWatch:
    """The identity of one database file, and whether its path still leads to it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.identity: tuple[int, int] | None = None

    def remember(self) -> None:
        """Take the file now at the path as the one the log writes (after (re)opening)."""
        self.identity = self._now()

    def moved(self, identity: tuple[int, int] | None = None) -> str | None:
        """Why the path no longer leads to ``identity`` (default: the remembered file):
        ``"removed"`` or ``"replaced by another file"``; None while it does."""
        expected = self.identity if identity is None else identity
        now = self._now()
        if now is None:
            return "removed"
        if expected is not None and now != expected:
            return "replaced by another file"
        return None

    def _now(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        except NotADirectoryError:  # a path component was replaced by a file
            return None
        return (stat.st_dev, stat.st_ino)
