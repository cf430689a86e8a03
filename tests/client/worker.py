"""Client processes for the end-to-end tests (run as `python -m tests.client.worker MODE ...`).

- `chaos`: N threads call the API through `BearerAuth` over one shared `FileStore` for a while,
  then print one JSON line of figures.
- `crash`: one refresh, with a test-only `Refresher` subclass that sends itself SIGKILL between
  receiving the token response and writing the store (after noting the fingerprint of the pair
  it received, so the test can compare it with what the next process recovers).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import httpx

from baton.client import (
    BearerAuth,
    FailureEvent,
    FileStore,
    Hooks,
    OAuthClient,
    Refresher,
    RotationEvent,
    TokenPair,
)
from baton.client.stores import Lease


class CrashAfterExchange(Refresher):
    """kill -9 after the server answered and before the new pair is stored."""

    received_note: Path | None = None

    def _exchange(
        self, marked: TokenPair, lease: Lease, fresh: bool = False, no_leeway: bool = False
    ) -> tuple[TokenPair, int]:
        new, _attempts = super()._exchange(marked, lease, fresh, no_leeway)
        if self.received_note is not None:
            self.received_note.write_text(json.dumps(new.describe()))
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["chaos", "crash"])
    parser.add_argument("--store", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--api", default="")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--margin", type=float, default=1.5)
    # A short pause between a thread's requests keeps 64 threads from saturating two cores,
    # where a request could outlast a 2 s access token in flight: that would measure the
    # machine, not the SDK.
    parser.add_argument("--pause", type=float, default=0.02)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    store = FileStore(args.store)
    client = OAuthClient(args.issuer + "/token", args.client_id, args.client_secret)
    metadata = args.issuer + "/.well-known/oauth-authorization-server"

    if args.mode == "crash":
        crashing = CrashAfterExchange(client, store, metadata_url=metadata)
        crashing.received_note = Path(args.note) if args.note else None
        crashing.refresh(crashing.pair())
        sys.exit(3)  # not reached: the process is killed above

    rotations: list[RotationEvent] = []
    failures: list[FailureEvent] = []
    refresher = Refresher(
        client,
        store,
        metadata_url=metadata,
        hooks=Hooks(on_rotation=rotations.append, on_failure=failures.append),
    )
    auth = BearerAuth(refresher, margin=args.margin)
    counts = {"requests": 0, "ok": 0, "failed": 0, "retried_401": 0}
    errors: list[str] = []
    guard = threading.Lock()
    stop_at = time.monotonic() + args.duration

    def hammer() -> None:
        with httpx.Client(auth=auth, timeout=30) as http:
            while time.monotonic() < stop_at:
                try:
                    response = http.get(args.api + "/hello")
                    ok = response.status_code == 200
                    detail = f"{response.status_code} {response.text[:200]}"
                except Exception as exc:
                    ok, detail = False, f"{type(exc).__name__}: {exc}"
                    response = None
                with guard:
                    counts["requests"] += 1
                    counts["ok" if ok else "failed"] += 1
                    if response is not None and response.history:
                        counts["retried_401"] += 1
                    if not ok and len(errors) < 20:
                        errors.append(detail)
                time.sleep(args.pause)

    threads = [threading.Thread(target=hammer) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(
        json.dumps(
            {
                **counts,
                "rotations": len(rotations),
                "refresh_failures": [f"{f.kind}: {f.detail}" for f in failures],
                "errors": errors,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
