"""SignalRelay: a signal reaches its callback whichever thread the kernel delivers it to."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from comet_agent.signals import SignalRelay

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers can only be installed from the main thread",
)


def _parked_thread() -> tuple[threading.Thread, threading.Event]:
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(30,), daemon=True)
    thread.start()
    return thread, release


def test_a_signal_delivered_to_another_thread_wakes_a_main_thread_blocked_in_a_wait():
    """The case a plain handler misses: the main thread sleeps in a lock's wait and the kernel
    gave the signal to a worker thread. pthread_kill() makes that delivery deterministic."""
    woken = threading.Event()
    worker, release = _parked_thread()
    try:
        with SignalRelay((signal.SIGUSR1,), lambda _signum: woken.set()):
            threading.Timer(0.2, signal.pthread_kill, args=(worker.ident, signal.SIGUSR1)).start()
            started = time.monotonic()
            assert woken.wait(20), "the relay did not see a signal delivered to another thread"
            assert time.monotonic() - started < 10
    finally:
        release.set()


def test_the_callback_may_take_the_lock_the_interrupted_main_thread_waits_on():
    """Event.set() from a plain handler can deadlock against the main thread's Event.wait();
    from the relay's thread it is safe, many times over."""
    stop = threading.Event()
    relayed = threading.Semaphore(0)
    seen: list[int] = []

    def on_signal(signum: int) -> None:
        seen.append(signum)
        relayed.release()
        if len(seen) == 50:
            stop.set()

    def send_one_at_a_time() -> None:
        # A signal sent while the same one is still pending merges with it (the kernel keeps one
        # of each standard signal): on a busy machine, 50 sent 2 ms apart arrived as 49.
        for _ in range(50):
            os.kill(os.getpid(), signal.SIGUSR1)
            if not relayed.acquire(timeout=10):
                break  # not relayed: the main thread's wait below fails and says how many were

    with SignalRelay((signal.SIGUSR1,), on_signal):
        sender = threading.Thread(target=send_one_at_a_time, daemon=True)
        sender.start()
        assert stop.wait(30), f"only {len(seen)} of 50 signals were relayed"
        sender.join(5)
    assert set(seen) == {signal.SIGUSR1}


def test_only_the_named_signals_reach_the_callback_and_a_failing_callback_does_not_end_the_relay():
    seen: list[int] = []
    second = threading.Event()

    def on_signal(signum: int) -> None:
        seen.append(signum)
        if len(seen) == 1:
            raise RuntimeError("the first call fails")
        second.set()

    usr2 = signal.signal(signal.SIGUSR2, lambda _s, _f: None)  # handled in Python, but not ours
    try:
        with SignalRelay((signal.SIGUSR1,), on_signal):
            os.kill(os.getpid(), signal.SIGUSR2)
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGUSR1)
            assert second.wait(10)
    finally:
        signal.signal(signal.SIGUSR2, usr2)
    assert seen == [signal.SIGUSR1, signal.SIGUSR1]


def test_leaving_restores_the_previous_handler_and_wakeup_fd_and_ends_the_thread():
    def previous_handler(_signum, _frame):
        return None

    original_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(original_fd)
    before = signal.signal(signal.SIGUSR1, previous_handler)
    try:
        with SignalRelay((signal.SIGUSR1,), lambda _signum: None, name="relay-under-test"):
            assert signal.getsignal(signal.SIGUSR1) is not previous_handler
            assert any(thread.name == "relay-under-test" for thread in threading.enumerate())
        assert signal.getsignal(signal.SIGUSR1) is previous_handler
        assert not any(thread.name == "relay-under-test" for thread in threading.enumerate())
        assert signal.set_wakeup_fd(original_fd) == original_fd  # ours is not left behind
    finally:
        signal.signal(signal.SIGUSR1, before)
