"""`baton scope describe`, `list` and `remove`: the words the consent page shows for a scope.

A registered scope is described in a person's words ("read your calendars"), which the consent
page shows beside the scope's name; an unregistered one shows its bare name. The OpenID Connect
scopes (`openid`, `profile`, `email`, `offline_access`) keep Baton's own, translated words on an
OpenID request, whatever is registered for them.
"""

from __future__ import annotations

import click

from baton.cli.common import current_time, db_option, emit, fail, run_with_store
from baton.core.scope import ScopeError, parse

# A description is one line a person reads on the consent page.
MAX_DESCRIPTION = 300


def _scope_name(name: str) -> str:
    try:
        parsed = parse(name)
    except ScopeError:
        fail(f'{name!r} is not a scope name (RFC 6749 §3.3: printable ASCII, no space, " or \\)')
    if len(parsed) != 1 or len(name) > 200:
        fail(f"{name!r} is not one scope name of at most 200 characters")
    return name


@click.group()
def scope() -> None:
    """The words the consent page shows for each scope."""


@scope.command("describe")
@db_option
@click.argument("name")
@click.argument("text")
@click.option("--json", "as_json", is_flag=True)
def scope_describe(db: str, name: str, text: str, as_json: bool) -> None:
    """Register what scope NAME lets a client do, in TEXT (replacing earlier words)."""
    name = _scope_name(name)
    text = " ".join(text.split())
    if not text:
        fail("the description must not be empty")
    if len(text) > MAX_DESCRIPTION or any(ord(c) < 32 or ord(c) == 127 for c in text):
        fail(f"the description must be one line of at most {MAX_DESCRIPTION} characters")
    created = run_with_store(db, lambda store: store.describe_scope(name, text, current_time()))
    payload = {"name": name, "description": text, "created": created}
    emit(as_json, payload, f"{'described' if created else 'redescribed'} scope {name}")


@scope.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True)
def scope_list(db: str, as_json: bool) -> None:
    """The described scopes, by name."""
    found = run_with_store(db, lambda store: store.all_scope_descriptions())
    rows = [
        {"name": s.name, "description": s.description, "updated_at": s.updated_at} for s in found
    ]
    text = "\n".join(f"{s.name}\t{s.description}" for s in found) or "no described scopes"
    emit(as_json, {"scopes": rows}, text)


@scope.command("remove")
@db_option
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def scope_remove(db: str, name: str, as_json: bool) -> None:
    """Forget the words of scope NAME (the consent page then shows its bare name)."""
    if not run_with_store(db, lambda store: store.remove_scope(name)):
        fail(f"no described scope {name!r}")
    emit(as_json, {"name": name, "removed": True}, f"removed the description of scope {name}")
