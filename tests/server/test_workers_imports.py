"""What each process of `baton serve --workers N` imports: the supervisor none of the app, a
worker what serving needs and not the command line's pretty-printers. Each check runs in a
fresh interpreter, as the processes start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import uvicorn.config

from baton.server.runtime import workers
from tests.server.test_lean_imports import _fresh_worker as fresh_worker_modules
from tests.server.test_lean_imports import _run as run_fresh

# Modules a supervisor never needs: the app, its store, its crypto, the server, multiprocessing.
NOT_IN_SUPERVISOR = (
    "baton.server.app",
    "baton.store",
    "baton.core.keys",
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "cryptography",
    "joserfc",
    "alembic",
    "rich",
    "multiprocessing",
)
# Modules no server process needs (the command line's tables and demo, plots).
NOT_IN_WORKER = ("rich", "better_exceptions", "colorama", "pygments", "matplotlib")


def _modules(code: str, env: dict[str, str] | None = None) -> list[str]:
    """`sys.modules` of a fresh interpreter after `code` (`test_lean_imports._run`)."""
    return run_fresh(code, env)[0]


def _found(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted({p for p in prefixes for m in modules if m == p or m.startswith(p + ".")})


def test_the_supervisor_imports_none_of_the_app() -> None:
    modules = _modules(
        "from baton.server.runtime import workers\n"
        "workers.refuse_unused_modules()\n"
        "from baton.logs import dict_config\n"
        "workers.configure_logging({'log_config': dict_config('info', 'console'),"
        " 'log_level': 'info'})\n"
        "import logging; logging.getLogger('uvicorn.error').info('Started parent process')\n"
    )
    assert _found(modules, NOT_IN_SUPERVISOR) == []


def test_a_worker_imports_what_serving_needs_only(tmp_path: Path) -> None:
    modules = fresh_worker_modules(tmp_path)  # (it checks the app is there)
    assert _found(modules, NOT_IN_WORKER) == []


def test_the_libraries_that_would_import_the_refused_modules_do_without_them() -> None:
    """structlog and httpx import rich (and colorama, better_exceptions, pygments) only when
    they are installed; refused, the server's log lines still render, exceptions included, and
    alembic's templates (mako) still load."""
    code = (
        "from baton.server.runtime import workers\n"
        "workers.refuse_unused_modules()\n"
        "import logging, sys, httpx, mako.exceptions, alembic.runtime.migration\n"
        "from baton.logs import formatter\n"
        "handler = logging.StreamHandler(sys.stderr)\n"
        "handler.setFormatter(formatter('console'))\n"
        "log = logging.getLogger('baton.test'); log.addHandler(handler)\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    log.exception('worker failed')\n"
    )
    script = code + "import sys; print('rich' in sys.modules and sys.modules['rich'] is not None)"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"
    assert "worker failed" in done.stderr
    assert "ZeroDivisionError" in done.stderr


def test_the_exit_code_of_a_worker_that_never_listened_is_uvicorns() -> None:
    assert workers.STARTUP_FAILURE == uvicorn.config.STARTUP_FAILURE


def test_a_protocol_class_travels_by_name() -> None:
    from baton.server.fastpath import http_protocol
    from baton.server.runtime.worker import uvicorn_options

    protocol = http_protocol(True)
    name = f"{protocol.__module__}:{protocol.__qualname__}"
    assert uvicorn_options({"http": name, "factory": True})["http"] is protocol
    assert uvicorn_options({"http": "httptools"})["http"] == "httptools"
