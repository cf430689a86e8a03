"""A check shared by the store tests: does a store's lock let one holder in at a time?"""

from __future__ import annotations

import threading
import time

from baton.client import TokenStore


def most_holders_at_once(store: TokenStore, threads: int, rounds: int, hold: float) -> int:
    """Threads take the store's lock `rounds` times each; returns the peak number inside."""
    inside = 0
    peak = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, peak
        for _ in range(rounds):
            with store.lock():
                with guard:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(hold)
                with guard:
                    inside -= 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return peak
