"""Child processes that never outlive their parent.

A decoding worker or web server left behind by a ``kill -9`` keeps its memory, locks and port
for good; on Linux the kernel can signal a child the moment its parent dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent exits (Linux; elsewhere a no-op).

    Call it in the child: as a ``preexec_fn`` or a data-loader ``worker_init_fn``. If the parent
    died before the request took effect, exit at once rather than run orphaned.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl in this libc: nothing more we can do
        return
    if os.getppid() != parent:  # the parent is already gone (reparented to init)
        os.kill(os.getpid(), sig)


def loader_worker_init(_: int = 0) -> None:
    """A data-loader worker's ``worker_init_fn``: it dies with its parent (a ``kill -9`` must not
    leave it running), and leaves SIGTERM and SIGINT to the main process. A batch system stops
    a job by signalling its whole process group: a worker killed by that signal made the main
    process fail with "DataLoader worker ... is killed by signal" instead of stopping cleanly
    (status 143, resumable) and shutting its workers down itself."""
    die_with_parent(signal.SIGKILL)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
