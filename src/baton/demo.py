"""`baton demo`: a grant's whole life in a minute, on a throwaway server, told twice.

A server runs in-process (uvicorn, a free port, a temporary SQLite database). A scripted client
signs in, rotates its refresh token, loses a response and recovers it inside the leeway, and
then a stolen, long-exchanged refresh token is replayed: reuse detection revokes the family.
The timeline is printed in the terminal, and the admin console stays open to look at it.

The server's clock is the system clock shifted into the past: the script moves it forward in
steps of minutes, so eighty minutes of traffic take a few seconds, under the default lifetimes
and leeway, and the story ends at about the real present.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import math
import re
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
from rich.console import Console
from rich.table import Table
from rich.text import Text
from starlette.applications import Starlette

from baton.config import Settings
from baton.core import timeline
from baton.core.policy import Policy
from baton.core.timeline import Kind, Timeline
from baton.core.tokens import TokenKind, mint, random_id
from baton.core.vocabulary import REUSE_EVENT_KINDS
from baton.passwords import hash_password
from baton.server.admin.timeline_svg import dated, duration
from baton.server.app import create_app
from baton.store.base import Client
from baton.store.sql import AdminStore, SQLStore

REDIRECT_URI = "http://127.0.0.1:9/callback"
MINUTE = 60
STORY = 80 * MINUTE  # how far the script moves the clock


class ShiftedClock:
    """The system clock plus an offset the script moves forward (never back)."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def now(self) -> int:
        return int(time.time()) + self.offset

    def ceiling(self) -> int:
        return math.ceil(time.time()) + self.offset

    def advance(self, seconds: int) -> None:
        self.offset += seconds


@dataclass
class Demo:
    base_url: str
    admin_password: str
    grant_id: str  # the grant whose family was revoked by the replay
    phone_grant_id: str  # alice's second grant, still live
    timeline: Timeline
    events: list[tuple[int, str, str]]  # (when, kind, detail) of every security event


def run(console: Console, *, host: str = "127.0.0.1", port: int = 0, wait: bool = True) -> Demo:
    """Tells the story; with `wait`, keeps the server (and its console) up until Ctrl-C.
    Without, the server stops once the story is told, so its console's address and password
    are not printed: they would lead nowhere."""
    with story(console, host=host, port=port, console_open=wait) as told:
        if wait:
            console.print("\nPress Ctrl-C to stop the server (the database is deleted).")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    if not wait:
        console.print(
            "\nThe demo ran to its end and its server has stopped (the temporary database is "
            "deleted). Run [bold]baton demo[/] without --exit to explore the admin console."
        )
    return told


@contextlib.contextmanager
def story(
    console: Console, *, host: str = "127.0.0.1", port: int = 0, console_open: bool = True
) -> Iterator[Demo]:
    """The server, with the story told, for as long as the block runs; `console_open`: the
    admin console's address and password are printed (the block keeps the server up for
    someone to sign in)."""
    sock = _bind(host, port)  # first: a port in use fails before anything is set up
    base_url = f"http://{host}:{sock.getsockname()[1]}"
    with tempfile.TemporaryDirectory(prefix="baton-demo-") as tmp:
        db = f"sqlite:///{Path(tmp) / 'demo.db'}"
        clock = ShiftedClock(-STORY - MINUTE)
        store = SQLStore.open(db, Policy())
        anyio.run(store.upgrade_schema)
        admin_password = secrets.token_urlsafe(12)
        alice_password = secrets.token_urlsafe(12)
        client, client_secret = _setup(store, admin_password, alice_password, clock)
        app = create_app(Settings(issuer=base_url), store, clock)
        with _serving(app, sock):
            where = f"on {base_url}" if console_open else "on a server that stops at the end"
            console.print(
                f"[bold]Baton demo[/] {where} (temporary database; the server's clock is "
                f"shifted {STORY // MINUTE} minutes back and moved by the script)\n"
            )
            grants = _script(console, base_url, client, client_secret, alice_password, clock)
            admin = store.admin()
            yield _told(console, base_url, admin, grants, clock, admin_password, console_open)


def _setup(
    store: SQLStore, admin_password: str, alice_password: str, clock: ShiftedClock
) -> tuple[Client, str]:
    secret = mint(TokenKind.CLIENT_SECRET)
    client = Client(
        id=random_id("cl_"),
        name="Demo app",
        secret_digest=secret.digest,
        is_public=False,
        is_resource_server=False,
        redirect_uris=(REDIRECT_URI,),
        scope="read write",
        created_at=clock.now(),
    )

    async def work() -> None:
        now = clock.now()
        await store.create_user("admin", hash_password(admin_password), now, admin=True)
        await store.create_user("alice", hash_password(alice_password), now)
        await store.create_client(client)

    anyio.run(work)
    return client, secret.plaintext


def _bind(host: str, port: int) -> socket.socket:
    """The server's socket, bound before the app is made (port 0: a free one), so the issuer
    names the real port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


@contextlib.contextmanager
def _serving(app: Starlette, sock: socket.socket) -> Iterator[None]:
    """uvicorn in a thread of its own, on `sock`, for as long as the block runs."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo server did not start")
            time.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def _script(
    console: Console,
    base_url: str,
    client: Client,
    client_secret: str,
    alice_password: str,
    clock: ShiftedClock,
) -> tuple[str, str]:
    """The story; returns the grants (the replayed one, then the phone's)."""
    import httpx

    def step(text: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M', time.gmtime(clock.now()))}[/]  {text}")

    auth = (client.id, client_secret)
    with httpx.Client(base_url=base_url, follow_redirects=False, timeout=10) as http:
        code, verifier = _sign_in_and_consent(http, client.id, alice_password)
        first = _token(
            http,
            auth,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
        )
        step("alice signs in and allows Demo app: pair [bold]gen 0[/]")
        clock.advance(20 * MINUTE)
        second = _refresh(http, auth, first)
        step("the app refreshes: [bold]gen 1[/] (gen 0 stays valid for the 10 min leeway)")
        clock.advance(20 * MINUTE)
        lost = _refresh(http, auth, second)
        step("the app refreshes gen 1, but the response is [yellow]lost[/] on the way")
        clock.advance(MINUTE)
        recovered = _refresh(http, auth, second)
        same = recovered["access_token"] == lost["access_token"]
        step(
            "it retries gen 1 inside the leeway: [green]the same gen 2 pair again[/]"
            if same
            else "it retries gen 1 inside the leeway: a new gen 2 pair"
        )
        clock.advance(19 * MINUTE)
        current = _refresh(http, auth, recovered)
        step("the app refreshes: [bold]gen 3[/]")
        clock.advance(2 * MINUTE)
        with httpx.Client(base_url=base_url, follow_redirects=False, timeout=10) as device:
            code, verifier = _sign_in_and_consent(device, client.id, alice_password)
        phone = _token(
            http,
            auth,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
        )
        step("alice signs in again on her phone: a second grant")
        clock.advance(3 * MINUTE)
        for _ in range(5):
            _failed_sign_in(http)
        step("someone tries five wrong passwords for alice: [yellow]sign-in locked[/]")
        clock.advance(10 * MINUTE)
        stolen = _try_refresh(http, auth, second)
        step(
            f"an attacker replays a stolen copy of gen 1: [red]{stolen.json()['error']}[/] "
            f"({stolen.json()['error_description']})"
        )
        after = _try_refresh(http, auth, current)
        step(f"the app's own gen 3 now fails too: [red]{after.json()['error_description']}[/]")
        clock.advance(3 * MINUTE)
        _refresh(http, auth, phone)
        step("the phone's grant is another family: its refresh still works")
    return str(first["_grant_id"]), str(phone["_grant_id"])


def _sign_in_and_consent(http: Any, client_id: str, password: str) -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "read write",
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    response = http.get("/authorize", params=params)
    login = http.get(response.headers["location"])
    fields = _hidden(login.text)
    signed = http.post("/login", data={**fields, "username": "alice", "password": password})
    answer = http.get(signed.headers["location"])
    if answer.status_code == 200:  # the consent page (a remembered consent skips it)
        answer = http.post("/authorize", data={**_hidden(answer.text), "decision": "allow"})
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    return query["code"][0], verifier


def _failed_sign_in(http: Any) -> None:
    fields = _hidden(http.get("/login").text)
    http.post("/login", data={**fields, "username": "alice", "password": "not-alices-password"})


def _hidden(html: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)
    return {name: unescape(value) for name, value in found}


def _token(http: Any, auth: tuple[str, str], data: dict[str, str]) -> dict[str, Any]:
    response = http.post("/token", data=data, auth=auth)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    # The grant, from introspection by the client itself (RFC 7662), for the console link.
    seen = http.post("/introspect", data={"token": body["access_token"]}, auth=auth).json()
    body["_grant_id"] = seen.get("grant_id")
    return body


def _refresh(http: Any, auth: tuple[str, str], pair: dict[str, Any]) -> dict[str, Any]:
    return _token(http, auth, _refresh_form(pair))


def _try_refresh(http: Any, auth: tuple[str, str], pair: dict[str, Any]) -> Any:
    return http.post("/token", data=_refresh_form(pair), auth=auth)


def _refresh_form(pair: dict[str, Any]) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}


def _told(
    console: Console,
    base_url: str,
    admin: AdminStore,
    grants: tuple[str, str],
    clock: ShiftedClock,
    admin_password: str,
    console_open: bool,
) -> Demo:
    grant_id, phone_grant_id = grants
    family = anyio.run(admin.family, grant_id)
    assert family is not None
    drawn = timeline.build(
        family.grant,
        family.refresh,
        family.access,
        family.events,
        now=clock.now(),
        policy=Policy(),
    )
    rows, _ = anyio.run(admin.security_events)
    console.print()
    console.print(terminal_timeline(drawn, console.width))
    console.print()
    events = Table(title="Security events", title_justify="left", show_edge=False)
    for column in ("when", "kind", "gen", "detail"):
        events.add_column(column)
    for e in reversed(rows):
        colour = "red" if e.kind in REUSE_EVENT_KINDS else "yellow"
        events.add_row(
            _clock(e.occurred_at),
            f"[{colour}]{e.kind}[/]",
            "" if e.generation is None else str(e.generation),
            dated(e.detail),
        )
    console.print(events)
    if console_open:
        console.print(
            f"\nAdmin console: [bold]{base_url}/admin/grants/{grant_id}[/]\n"
            f"sign in as [bold]admin[/] with the password [bold]{admin_password}[/]"
        )
    return Demo(
        base_url,
        admin_password,
        grant_id,
        phone_grant_id,
        drawn,
        [(e.occurred_at, e.kind, e.detail or "") for e in rows],
    )


def _clock(instant: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(instant))


def terminal_timeline(drawn: Timeline, width: int = 100) -> Table:
    """The timeline as a table: one row per pair, its life drawn in characters.

    ━ refresh token live, ░ its leeway, ● the exchange, ▲ a retry in the leeway, ✖ the reuse
    that revoked the family; the access token's life is the thin line ─ under it.
    """
    cells = max(24, min(60, width - 60))
    span = max(drawn.end - drawn.start, 1)

    def cell(instant: int) -> int:
        return min(cells - 1, max(0, (instant - drawn.start) * cells // span))

    table = Table(
        title=f"Token family of grant {drawn.grant.id}: {drawn.status}",
        title_justify="left",
        show_edge=False,
        caption="━ refresh token  ─ access token  ░ leeway  ● exchange  ▲ retry  ✖ reuse",
        caption_justify="left",
    )
    table.add_column("gen", justify="right")
    table.add_column(f"{_clock(drawn.start)} … {_clock(drawn.end)} UTC", no_wrap=True)
    table.add_column("refresh token dies", no_wrap=True)
    table.add_column("why")
    for bar in drawn.bars:
        line = [" "] * cells
        styles = [""] * cells
        if bar.refresh is not None:
            for i in range(cell(bar.refresh.start), cell(min(bar.refresh.end, drawn.end)) + 1):
                line[i], styles[i] = "━", "blue"
        if bar.leeway is not None:
            for i in range(cell(bar.leeway.start), cell(min(bar.leeway.end, drawn.end)) + 1):
                line[i], styles[i] = "░", "yellow"
        for mark in bar.marks:
            glyph, style = {
                Kind.EXCHANGE: ("●", "bold"),
                Kind.RETRY: ("▲", "yellow"),
            }.get(mark.kind, ("✖", "bold red"))
            line[cell(mark.at)], styles[cell(mark.at)] = glyph, style
        access = [" "] * cells
        if bar.access is not None:
            for i in range(cell(bar.access.start), cell(min(bar.access.end, drawn.end)) + 1):
                access[i] = "─"
        picture = Text()
        for char, style in zip(line, styles, strict=True):
            picture.append(char, style=style)
        picture.append("\n" + "".join(access), style="green")
        dies = (
            f"{_clock(bar.refresh.end)} (+{duration(bar.refresh.end - bar.refresh.start)})"
            if bar.refresh
            else "—"
        )
        why = bar.refresh.cause if bar.refresh else ""
        if any(m.kind is Kind.REUSE for m in bar.marks):
            why += " · [bold red]replayed later: reuse detected[/]"
        table.add_row(str(bar.generation), picture, dies, why)
    return table
