"""io.reactor: the datapath's one wait — tap fds, host sockets and the next deadline in one epoll.

One thread runs the loop: a blocking ``epoll_wait`` whose timeout is the
engine's next deadline, then every ready fd's handler, then ``after(now)``
(timers, flushing the cores, writing frames), which returns the next
deadline. No packet goes through trio's scheduler, and nothing is re-armed
per wake-up (level-triggered; masks change only when a flow's wants do).

Trio keeps the control plane. ``run()`` is the trio side: it owns the thread
(started at once, or by ``go()`` when set-up must finish first — e.g. the
launcher confines itself before the datapath starts, so the thread inherits
the confinement), waits for it, and on cancellation stops and joins it, so
the datapath lives in a nursery like any task.

Other threads (the API, the port drivers' set-up) change the datapath's
state only while holding ``lock``, a re-entrant lock the loop holds from
the end of each ``epoll_wait`` to the start of the next; ``kick()`` wakes
the loop so it recomputes its deadline (``control()`` does both).
"""

from __future__ import annotations

import os
import select
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import trio

EPOLLIN = select.EPOLLIN
MAX_EVENTS = 512

Handler = Callable[[Any, int, float], None]


class Reactor:
    def __init__(self, after: Callable[[float], float | None], on_error: Callable[[BaseException, int], None]):
        self.ep = select.epoll()
        self.lock = threading.RLock()
        self._handlers: dict[int, tuple[Handler, Any]] = {}
        self._after = after
        self._on_error = on_error
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.ep.register(self._wake, EPOLLIN)
        self._stop = False
        self._worker: threading.Thread | None = None
        self._done: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._error: BaseException | None = None
        self.wakeups = 0  # returns from epoll_wait
        self.closed = False

    # -- the fd registry (any thread, under the lock) ----------------------------
    def register(self, fd: int, handler: Handler, ctx: Any, mask: int = 0) -> None:
        with self.lock:
            self._handlers[fd] = (handler, ctx)
            self.ep.register(fd, mask)

    def registered(self, fd: int) -> bool:
        return fd in self._handlers

    def modify(self, fd: int, mask: int) -> None:
        self.ep.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        with self.lock:
            if self._handlers.pop(fd, None) is not None and not self.closed:
                try:
                    self.ep.unregister(fd)
                except (OSError, ValueError):  # already closed fd, or the epoll itself is gone
                    pass

    def kick(self) -> None:
        """Make the loop recompute its deadline (after another thread changed something)."""
        try:
            os.eventfd_write(self._wake, 1)
        except (BlockingIOError, OSError):
            pass  # already pending, or closed

    @contextmanager
    def control(self) -> Iterator[None]:
        """Change the datapath's state from another thread: hold the lock, then wake the loop."""
        with self.lock:
            yield
        self.kick()

    # -- the loop (its own thread) ---------------------------------------------
    def _loop(self) -> None:
        poll = self.ep.poll
        handlers = self._handlers
        lock = self.lock
        after = self._after
        wake = self._wake
        monotonic = time.monotonic
        try:
            with lock:
                deadline = after(monotonic())
            while not self._stop:
                if deadline is None:
                    events = poll(-1, MAX_EVENTS)
                else:
                    t = deadline - monotonic()
                    events = poll(t if t > 0 else 0, MAX_EVENTS)
                lock.acquire()
                try:
                    self.wakeups += 1
                    now = monotonic()
                    for fd, ev in events:
                        if fd == wake:
                            try:
                                os.eventfd_read(wake)
                            except BlockingIOError:
                                pass
                            continue
                        h = handlers.get(fd)
                        if h is not None:
                            try:
                                h[0](h[1], ev, now)
                            except Exception as e:  # noqa: BLE001 - a bug in a handler: report, stop watching that fd
                                self._on_error(e, fd)
                                self.unregister(fd)
                    deadline = after(now)
                finally:
                    lock.release()
        except BaseException as e:  # noqa: BLE001 - handed to the trio side, which raises it
            self._error = e
        finally:
            token, done = self._token, self._done
            if token is not None and done is not None:
                try:
                    token.run_sync_soon(done.set)
                except trio.RunFinishedError:
                    pass

    # -- lifecycle (the trio side) -------------------------------------------------
    def go(self) -> None:
        """Start the datapath thread (once).

        With $ROOTLESSNET_PROFILE_DATAPATH=FILE the thread runs under cProfile and writes its
        statistics (pstats) to FILE when it stops: where a packet's Python time goes.
        """
        if self._worker is None and not self._stop:
            target = self._loop
            path = os.environ.get("ROOTLESSNET_PROFILE_DATAPATH")
            if path:
                target = lambda: _profiled(self._loop, path)  # noqa: E731
            self._worker = threading.Thread(target=target, name="rootlessnet-datapath", daemon=True)
            self._worker.start()

    async def run(self, *, hold: bool = False, started: Callable[[], None] | None = None) -> None:
        """Own the datapath thread until cancelled (or until it fails: its exception is raised here)."""
        self._token = trio.lowlevel.current_trio_token()
        self._done = trio.Event()
        if not hold:
            self.go()
        if started is not None:
            started()
        try:
            await self._done.wait()
            if self._error is not None:
                raise self._error
        finally:
            self._stop = True
            self.kick()
            if self._worker is not None:
                self._worker.join(10)  # one loop iteration at most: the kick wakes it

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.ep.close()
            os.close(self._wake)


def _profiled(fn: Callable[[], None], path: str) -> None:
    import cProfile

    prof = cProfile.Profile()
    try:
        prof.runcall(fn)
    finally:
        prof.dump_stats(path)
