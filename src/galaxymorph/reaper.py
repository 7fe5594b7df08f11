"""A watchdog that kills what a ``kill -9``-ed process leaves running (Linux).

``PR_SET_PDEATHSIG`` (:func:`galaxymorph.processes.die_with_parent`) covers the children we
start ourselves; a local Ray cluster is started by Ray, which fate-shares its GCS and raylet
with the driver but not the agents and workers those start: after a ``kill -9`` of ``predict
--engine ray`` they ran on for good. The watchdog runs beside the driver in a session of its
own, learns the driver's process tree while it lives, and when the driver dies without saying
goodbye it SIGKILLs what is left of that tree (checked by start time, so a reused pid is never
hit). Run as ``python -m galaxymorph.reaper PID``; :func:`watch` starts it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: How often the watchdog looks at the process tree (a process born and orphaned within one
#: interval is still found through the process group, see :func:`_orphans`).
INTERVAL_S = 0.5

Proc = tuple[int, int]  # (pid, start time in clock ticks): a pid is reused, the pair is not


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, parent pid, process group, start time) of a live process, else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _table() -> dict[int, tuple[str, int, int, int]]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            table[int(entry)] = st
    return table


def _tree(roots: set[Proc], table: dict[int, tuple[str, int, int, int]]) -> set[Proc]:
    """``roots`` (those still alive) and all their live descendants."""
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = {(pid, start) for pid, start in roots if pid in table and table[pid][3] == start}
    todo = [pid for pid, _ in found]
    while todo:
        for child in children.get(todo.pop(), []):
            proc = (child, table[child][3])
            if proc not in found:
                found.add(proc)
                todo.append(child)
    return found


def _orphans(pgid: int, born_after: int, table: dict[int, tuple[str, int, int, int]]) -> set[Proc]:
    """Ray's processes of the driver's group started after it: what a child started in the last
    interval and orphaned at once would be (matched by name, so that other members of a shell
    pipeline in the same group are never touched)."""
    found = set()
    for pid, (_, _, group, start) in table.items():
        if group != pgid or start < born_after or pid == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if cmd.startswith(b"ray::") or b"/ray/" in cmd:
            found.add((pid, start))
    return found


def reap_after(pid: int) -> int:
    """Watch ``pid``; once it is gone, kill what is left of its tree. Returns how many were killed.
    SIGTERM ends the watch with nothing killed (the driver's clean exit)."""
    first = _stat(pid)
    if first is None:
        return 0
    _, _, pgid, start = first
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the driver: it cleans up itself
    me = (pid, start)
    known: set[Proc] = {me}
    while True:
        table = _table()
        if pid not in table or table[pid][3] != start:
            break
        known |= _tree(known, table)
        time.sleep(INTERVAL_S)
    killed = 0
    for _ in range(3):  # killing a parent may orphan a child found only on the next look
        table = _table()
        left = {p for p in _tree(known - {me}, table) | _orphans(pgid, start, table)
                if p != me and p[0] != os.getpid()}  # the watchdog is one of the driver's children
        for child, child_start in left:
            st = table.get(child)
            if st is not None and st[3] == child_start:
                try:
                    os.kill(child, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
        if not left:
            break
        time.sleep(INTERVAL_S)
    return killed


def watch(pid: int | None = None) -> subprocess.Popen | None:
    """Start the watchdog for ``pid`` (default: this process); ``None`` off Linux. Stop it with
    ``terminate()`` once the driver has cleaned up after itself."""
    if not sys.platform.startswith("linux") or not Path("/proc/self/stat").exists():
        return None
    return subprocess.Popen([sys.executable, "-m", "galaxymorph.reaper", str(pid or os.getpid())],
                            start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":  # pragma: no cover (run by watch())
    reap_after(int(sys.argv[1]))
