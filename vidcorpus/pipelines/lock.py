"""One build per output: a lock file in the work directory, held for the whole build.

The file says who holds it (pid, host, start time). A second build into the same output refuses
at once; a lock left by a process that no longer runs on this host (a killed build) is taken
over, with a message. Local work directories get an atomic create (O_EXCL); on object stores
the check is best-effort.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time

from vidcorpus import storage

LOCK = "build.lock"
log = logging.getLogger(__name__)


class BuildLocked(RuntimeError):
    """Another build is writing into this output."""


class BuildLock:
    """Context manager holding `<work_dir>/build.lock` while a build runs."""

    def __init__(self, work_dir: str):
        self.uri = storage.join(work_dir, LOCK)
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "process_start": _process_start(os.getpid())}

    def __enter__(self) -> BuildLock:
        if not self._create():
            other = self._read()
            if other is not None and not _is_dead(other):
                raise BuildLocked(f"another build is writing into this output (pid {other.get('pid')} on "
                                  f"{other.get('host')}, started {other.get('started')}; lock file "
                                  f"{self.uri}); wait for it to finish, or delete the lock file if it is gone")
            log.warning("taking over the lock of a build that is no longer running (%s)", _describe(other))
            storage.delete(self.uri)
            if not self._create():
                raise BuildLocked(f"another build took the lock {self.uri} at the same moment; try again")
        return self

    def __exit__(self, *exc) -> None:
        if (self._read() or {}).get("pid") == self.holder["pid"]:
            storage.delete(self.uri)

    def _create(self) -> bool:
        data = json.dumps(self.holder, sort_keys=True).encode()
        if not storage.is_local(self.uri):
            if storage.exists(self.uri):
                return False
            storage.write_bytes(self.uri, data)
            return True
        path = storage.local_path(self.uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def _read(self) -> dict | None:
        try:
            holder = json.loads(storage.read_bytes(self.uri))
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None


def _is_dead(holder: dict) -> bool:
    """A holder on this host whose process is gone. Holders on other hosts are presumed alive."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    pid = int(holder["pid"])
    started = holder.get("process_start")
    reused = started is not None and _process_start(pid) not in (None, started)
    return reused or _proc_stat(pid)[:1] == [b"Z"]


def _proc_stat(pid: int) -> list[bytes]:
    """Fields of /proc/<pid>/stat after the command name (state first); empty where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the pid, it names one process
    (a pid reused by another process after a killed build has another start time)."""
    fields = _proc_stat(pid)
    return int(fields[19]) if len(fields) > 19 else None


def _describe(holder: dict | None) -> str:
    if not holder:
        return "unreadable lock file"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
