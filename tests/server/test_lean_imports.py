"""What `baton serve`'s processes leave unimported, for memory: the supervisor writes its JSON
log lines without structlog; a worker on SQLite imports neither asyncpg nor SQLAlchemy's
PostgreSQL dialect; no worker loads, before it needs them, the HTTP client (outgoing calls),
the page templates' engine (pages), the password hasher (sign-in) or the admin console's
pages. Each check runs in a fresh interpreter, as the processes start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _run(code: str, env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """`sys.modules` of a fresh interpreter after `code` (with `env` added to this process's
    environment), and what it wrote to stderr."""
    listing = "sorted(name for name, module in sys.modules.items() if module)"
    script = f"{code}\nimport json, sys\nprint(json.dumps({listing}))\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=dict(os.environ, **(env or {})),
    )
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded, done.stderr


def _found(modules: list[str], *prefixes: str) -> list[str]:
    return sorted({p for p in prefixes for m in modules if m == p or m.startswith(p + ".")})


def test_the_supervisor_writes_json_lines_without_structlog() -> None:
    modules, stderr = _run(
        "from baton.server.runtime import workers\n"
        "workers.refuse_unused_modules()\n"
        "from baton.logs import dict_config\n"
        "workers.configure_logging({'log_config': dict_config('info', 'json'),"
        " 'log_level': 'info'})\n"
        "import logging; log = logging.getLogger('uvicorn.error')\n"
        "log.info('Started parent process [%d]', 7)\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    log.exception('worker failed')\n"
    )
    assert _found(modules, "structlog") == []
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines] == ["Started parent process [7]", "worker failed"]
    assert "ZeroDivisionError" in lines[1]["exception"]


def test_the_database_error_checks_load_no_driver_until_one_is_in_use() -> None:
    """The 503 check and the command line's one-line problems know asyncpg's errors without
    importing asyncpg: on SQLite it never loads; on PostgreSQL its errors are recognised (the
    outage tests and the command line's error tests exercise them with the driver loaded)."""
    modules, _ = _run(
        "from sqlalchemy.exc import IntegrityError\n"
        "from baton.server.runtime.protection import is_database_unavailable\n"
        "import baton.store.problems\n"
        "assert is_database_unavailable(ConnectionResetError())\n"
        "assert not is_database_unavailable(IntegrityError('INSERT', None, Exception('dup')))\n"
    )
    assert _found(modules, "asyncpg") == []


def _fresh_worker(tmp_path: Path) -> list[str]:
    """`sys.modules` of a worker on SQLite once its app is made, before any request."""
    modules, _ = _run(
        "import os\n"
        "from baton.server.runtime import workers\n"
        "workers.refuse_unused_modules()\n"
        "from baton.config import OPTIONS, build\n"
        "values = {o.name: o.default for o in OPTIONS}\n"
        f"values.update(db='sqlite:///{tmp_path}/baton.db', issuer='http://127.0.0.1:8000',"
        " session_key='k' * 43)\n"
        "config, _ = build(values)\n"
        "os.environ['BATON_SERVE_CONFIG'] = config.to_json()\n"
        "import baton.server.runtime.worker\n"
        "from baton.server.runtime.asgi import create\n"
        "create()\n"
    )
    assert "baton.server.app" in modules
    return modules


def test_a_worker_on_sqlite_imports_no_postgresql_driver_nor_the_migrations(tmp_path: Path) -> None:
    modules = _fresh_worker(tmp_path)
    assert _found(modules, "asyncpg", "sqlalchemy.ext.asyncio", "alembic", "mako") == []


def test_a_fresh_worker_loads_no_http_client_templates_nor_password_hasher(tmp_path: Path) -> None:
    """Each is imported on first use: httpx and httpcore by the first outgoing call (a key set,
    a webhook, an upstream sign-in), `baton.resource` (which loads httpx) by the first key
    check, jinja2 by the first page, argon2 by the first password, the admin console's pages by
    the first request to one of them."""
    modules = _fresh_worker(tmp_path)
    heavy = ["httpx", "httpcore", "h11", "certifi", "baton.resource", "jinja2", "argon2"]
    heavy.append("baton.server.admin.console")
    assert _found(modules, *heavy) == []
