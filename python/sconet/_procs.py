"""Process hygiene (no heavy imports: the forkserver imports this module at start).

* Helper processes die with the process they serve. On Linux a process can ask the kernel for a
  signal when its parent dies (``prctl(PR_SET_PDEATHSIG)``). DataLoader workers call
  :func:`worker_init` (their ``worker_init_fn``); the ``forkserver`` that starts them when the
  trainer runs threads imports this module first (:func:`forkserver_dies_with_parent`), so a
  trainer killed by ``kill -9`` takes the forkserver with it, the forkserver its workers, and
  Python's resource tracker then sees its last client go and exits too.
* :func:`sigterm_as_interrupt`: ``SIGTERM`` (``kill``, a scheduler's stop) ends a run the way
  Ctrl-C does, so it is recorded as interrupted and its files are closed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "Terminated",
    "die_with_parent",
    "forkserver_dies_with_parent",
    "sigterm_as_interrupt",
    "worker_init",
]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux; else a no-op).

    Exits at once when the parent died before the request took effect. Returns whether the
    request was made.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        parent = os.getppid()
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent died before the request: nobody will signal us
        os._exit(1)
    return True


def worker_init(worker_id: int) -> None:
    """``worker_init_fn`` of sconet's DataLoaders: the worker dies with the process that forked it."""
    del worker_id
    die_with_parent()


def forkserver_dies_with_parent() -> None:
    """Make the multiprocessing forkserver (started later by this process) import this module,
    so that it dies with this process; a no-op when the forkserver already runs."""
    import multiprocessing

    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:  # pragma: no cover - no forkserver on this platform
        return
    ctx.set_forkserver_preload([__name__])


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by :func:`sigterm_as_interrupt` when ``SIGTERM`` arrives."""

    signum = signal.SIGTERM


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, ``SIGTERM`` raises :class:`Terminated` (a ``KeyboardInterrupt``) in the
    main thread; the previous handler comes back afterwards. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _started_as_forkserver() -> bool:
    return any("multiprocessing.forkserver import main" in a for a in getattr(sys, "orig_argv", ()))


if _started_as_forkserver():  # imported as the forkserver's preload: live only as long as its parent
    die_with_parent()
