"""The image's HEALTHCHECK: GET /healthz on the port `baton serve` listens on (BATON_PORT,
default 8000), from inside the container. Exit 0 when it answers 200, 1 otherwise.

/healthz says the process and its event loop answer (restart it when this fails); /readyz says
whether it should get traffic (database reachable, migrations applied, a signing key loaded) and
is for the proxy or orchestrator in front, not for a restart. Only the standard library: the
image has no curl."""

import os
import sys
import urllib.request

host = os.environ.get("BATON_HOST", "127.0.0.1")
# A wildcard address is reached through loopback; a specific one as it is.
host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
if ":" in host:
    host = f"[{host}]"
url = f"http://{host}:{os.environ.get('BATON_PORT', '8000')}/healthz"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as exc:
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
