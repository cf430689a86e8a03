"""`baton` command lines as processes of their own, without a second of imports for each.

A test that holds what a `baton` *process* does (its exit status, its stderr, no traceback)
needs a process per command line, and `python -m baton.cli` spends about a second of CPU on its
imports before it runs anything. `BatonProcesses` starts one Python process that imports
`baton.cli` once and then forks a child per command line: the child sets its argv, environment
and standard streams and calls the console script's `main()` at the top level of the program,
exactly as `python -m baton.cli` does, so a SystemExit or an uncaught exception (its traceback)
is the interpreter's own handling, in a real process, with a real exit status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

# The forking server. The parent reads one JSON command per line and answers each with the
# child's exit status (negative: the signal that ended it); the child leaves the loop and runs
# the command below it, where nothing catches what `main()` raises.
_SERVER = r"""
import json, os, signal, sys, time
import baton.cli  # the imports every command line needs, once
from baton.script import main

for line in sys.stdin:
    call = json.loads(line)
    pid = os.fork()
    if pid == 0:
        break
    deadline = time.monotonic() + call["timeout"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.005)
    print(json.dumps(os.waitstatus_to_exitcode(status)), flush=True)
else:
    sys.exit(0)

null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.dup2(os.open(call["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
os.dup2(os.open(call["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
sys.stdin = open(0, closefd=False)
os.chdir(call["cwd"])
os.umask(call["umask"])
os.environ.clear()
os.environ.update(call["env"])
sys.argv = ["baton", *call["args"]]
main()
"""


class BatonProcesses:
    """`run(*args, **env)`: the command line `baton ARGS` in a process of its own, with this
    process's environment less its BATON_ variables, plus `env`, and its working directory and
    umask (what a process started now would inherit)."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="baton-cli-")
        self._server: subprocess.Popen[str] | None = None
        self._count = 0

    def __enter__(self) -> BatonProcesses:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        self._server = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environ,
        )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            assert self._server.stdin is not None
            self._server.stdin.close()
            try:
                self._server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
        self._folder.cleanup()

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        server = self._server
        assert server is not None and server.stdin is not None and server.stdout is not None
        self._count += 1
        out = Path(self._folder.name) / f"{self._count}.out"
        err = Path(self._folder.name) / f"{self._count}.err"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")} | env
        umask = os.umask(0o077)  # what a process started now would inherit: the current one
        os.umask(umask)
        call = {
            "args": list(args),
            "env": environ,
            "cwd": os.getcwd(),
            "umask": umask,
            "stdout": str(out),
            "stderr": str(err),
            "timeout": timeout,
        }
        server.stdin.write(json.dumps(call) + "\n")
        server.stdin.flush()
        answer = server.stdout.readline()
        if not answer:
            raise RuntimeError(f"the forking server exited with {server.wait()}")
        code = json.loads(answer)
        return subprocess.CompletedProcess(
            ["baton", *args], code, out.read_text(errors="replace"), err.read_text()
        )
