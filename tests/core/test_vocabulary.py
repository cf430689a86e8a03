"""The vocabularies of `baton.core.vocabulary` are the strings the database, the wire, the
webhooks and the metrics already hold: a renamed member fails here, not in a receiver.

Each enum is pinned to its exact values, then to the places that document or store them (the
schema's column widths, the README's webhook list and metrics table, the docstring of
`baton.webhooks`); the OAuth error codes are checked against the RFCs and against every code the
source emits; the store is scanned for a bare word of the vocabularies it writes.
"""

from __future__ import annotations

import ast
import re
from enum import StrEnum
from pathlib import Path

import pytest

from baton import webhooks
from baton.core.vocabulary import (
    BACKCHANNEL_CAUSES,
    BACKCHANNEL_LOGOUT_EVENT,
    POLICY_NOTICE_TYPE,
    REUSE_CAUSES,
    REUSE_EVENT_KINDS,
    ErrorCode,
    FeedEntryKind,
    PolicyNoticeEvent,
    RevocationCause,
    SecurityEventKind,
    WebhookEventType,
)
from baton.store import schema

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "baton"
OBSERVABILITY = (ROOT / "docs" / "observability.md").read_text()


def values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def ticked(text: str) -> list[str]:
    """The `backticked` words of a piece of Markdown, in order."""
    return re.findall(r"`([^`]+)`", text)


# -- each vocabulary, exactly --------------------------------------------------------------------


def test_the_stored_and_sent_strings_are_exactly_these() -> None:
    assert [k.value for k in SecurityEventKind] == [
        "refresh_token_reuse",
        "code_reuse",
        "login_lockout",
        "leeway_retry",
        "client_disabled",
    ]
    assert [t.value for t in WebhookEventType] == ["reuse_detected", "grant.revoked"]
    assert values(RevocationCause) == [
        "reuse",
        "code_reuse",
        "revoked",
        "admin",
        "client_disabled",
        "logout",
    ]
    assert values(FeedEntryKind) == ["access_token", "grant"]
    assert [c.metric_label for c in RevocationCause] == [
        "reuse",
        "code_reuse",
        "rfc7009",
        "admin",
        "client_disabled",
        "logout",
    ]
    assert {"refresh_token_reuse", "code_reuse"} == REUSE_EVENT_KINDS
    assert {"reuse", "code_reuse"} == REUSE_CAUSES
    assert {"reuse", "code_reuse", "admin"} == BACKCHANNEL_CAUSES
    assert BACKCHANNEL_LOGOUT_EVENT == "http://schemas.openid.net/event/backchannel-logout"
    # Issue 28: the notices POSTed to a client's notify_url (docs/clients.md says so).
    assert values(PolicyNoticeEvent) == ["policy.scheduled", "policy.cancelled"]
    assert POLICY_NOTICE_TYPE == "baton-policy-notice+jwt"


def test_a_member_is_its_string_wherever_a_string_was() -> None:
    # What lets the store write members and read back plain strings equal to them.
    stored: str = "reuse"
    assert stored == RevocationCause.REUSE and hash(RevocationCause.REUSE) == hash(stored)
    assert "code_reuse" in REUSE_CAUSES and None not in REUSE_CAUSES
    assert f"{ErrorCode.INVALID_GRANT}" == str(ErrorCode.INVALID_GRANT) == "invalid_grant"


# -- the schema: every value fits its column -----------------------------------------------------


@pytest.mark.parametrize(
    ("enum", "column"),
    [
        (SecurityEventKind, schema.security_events.c.kind),
        (RevocationCause, schema.grants.c.revoked_reason),
        (FeedEntryKind, schema.revocation_events.c.kind),
        (WebhookEventType, schema.webhook_outbox.c.event_type),
        (
            StrEnum("Outbox", {"LOGOUT": BACKCHANNEL_LOGOUT_EVENT}),
            schema.webhook_outbox.c.event_type,
        ),
    ],
)
def test_every_value_fits_its_column(enum: type[StrEnum], column: object) -> None:
    length = getattr(getattr(column, "type", None), "length", None)
    assert isinstance(length, int)
    assert [v for v in values(enum) if len(v) > length] == []


# -- the documentation ---------------------------------------------------------------------------


def _webhook_bullets() -> dict[str, str]:
    """docs/observability.md's webhook list: each event type and the text of its bullet."""
    section = OBSERVABILITY.split("**Webhooks.**", 1)[1].split("```", 1)[0]
    bullets = re.findall(r"^- `([^`]+)`: (.*?)(?=^- |\Z)", section, re.MULTILINE | re.DOTALL)
    return dict(bullets)


def test_the_docs_list_every_webhook_event_type_and_no_other() -> None:
    assert list(_webhook_bullets()) == values(WebhookEventType)


def test_the_docs_list_every_revocation_cause_of_grant_revoked() -> None:
    bullet = _webhook_bullets()[WebhookEventType.GRANT_REVOKED]
    reasons = bullet.split("`reason`:", 1)[1]
    named = [word for word in ticked(reasons) if word != "baton grants revoke"]
    assert named == values(RevocationCause)


def test_the_docs_list_the_security_events_a_reuse_webhook_carries() -> None:
    bullet = _webhook_bullets()[WebhookEventType.REUSE_DETECTED]
    kinds = bullet.split("`kind`:", 1)[1].split(")", 1)[0]
    assert set(ticked(kinds)) == REUSE_EVENT_KINDS


def test_the_receivers_docstring_names_every_webhook_event_type() -> None:
    assert webhooks.__doc__ is not None
    line = next(x for x in webhooks.__doc__.splitlines() if x.startswith("- `Baton-Event-Type`"))
    assert ticked(line.split("(also", 1)[0])[1:] == values(WebhookEventType)


def test_the_docs_metrics_table_lists_every_revocation_label() -> None:
    row = next(x for x in OBSERVABILITY.splitlines() if x.startswith("| `baton_revocations_total`"))
    what = ticked(row.split("|")[3])
    assert set(what[:2]) == set(values(FeedEntryKind))
    causes = [word for word in what[2:] if not word.startswith("/")]  # not `/revoke`
    assert causes == [cause.metric_label for cause in RevocationCause]


# -- OAuth error codes ---------------------------------------------------------------------------

RFC_CODES = {
    # RFC 6749 §5.2, the token endpoint
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    # RFC 6749 §4.1.2.1, the authorization endpoint's redirects
    "access_denied",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    # RFC 6750 §3.1, a resource server's challenge
    "invalid_token",
    "insufficient_scope",
    # RFC 7009 §2.2.1, revocation
    "unsupported_token_type",
    # RFC 8707 §2, resource indicators
    "invalid_target",
    # RFC 7591 §3.2.2, dynamic client registration
    "invalid_redirect_uri",
    "invalid_client_metadata",
    # OpenID Connect Core §3.1.2.6, authentication requests
    "login_required",
    "consent_required",
    "interaction_required",
    "account_selection_required",
    "request_not_supported",
    "request_uri_not_supported",
    "registration_not_supported",
}


def test_every_code_of_the_rfcs_is_a_member() -> None:
    assert set(values(ErrorCode)) >= RFC_CODES
    # And nothing else but Baton's own rate-limit answer. (`slow_down`, RFC 8628's, went: Baton
    # has no device flow, and the OpenAPI document no longer claims it.)
    assert set(values(ErrorCode)) - RFC_CODES == {"too_many_requests"}


# Whatever builds an OAuth error from a code: its first argument is the code.
BUILDERS = {"OAuthError", "RedirectError", "RegistrationError"}


def _code_expressions(tree: ast.AST) -> list[ast.expr]:
    """Every expression that is an `error` code: a builder's first argument, an `error=`
    keyword, the value of an `"error"` key (or its schema's `enum`) and an `error = ...`
    class attribute."""
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in BUILDERS and node.args:
                found.append(node.args[0])
            found += [k.value for k in node.keywords if k.arg == "error"]
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "error":
                    found += _schema_enum(value) or [value]
        elif isinstance(node, ast.Assign) and node.value is not None:
            names = [
                t.id if isinstance(t, ast.Name) else getattr(t, "attr", "") for t in node.targets
            ]
            if "error" in names:
                found.append(node.value)
    return found


def _schema_enum(value: ast.expr) -> list[ast.expr]:
    """The values of an OpenAPI schema's `enum` (the error schema lists every code)."""
    if isinstance(value, ast.Dict):
        for key, listed in zip(value.keys, value.values, strict=True):
            if (
                isinstance(key, ast.Constant)
                and key.value == "enum"
                and isinstance(listed, ast.List)
            ):
                return listed.elts
    return []


def emitted_codes() -> list[tuple[str, str]]:
    """(place, code) of every code the server and the resource middleware can send, literal or
    a member of `ErrorCode` (the SDK in `baton.client` only reads codes)."""
    found: list[tuple[str, str]] = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path.relative_to(SOURCE).parts[0] == "client":
            continue
        for expr in _code_expressions(ast.parse(path.read_text(), str(path))):
            place = f"{path.relative_to(SOURCE)}:{expr.lineno}"
            if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
                found.append((place, expr.value))
            elif (
                isinstance(expr, ast.Attribute)
                and isinstance(expr.value, ast.Name)
                and expr.value.id == "ErrorCode"
            ):
                found.append((place, ErrorCode[expr.attr].value))
    return found


def test_every_code_the_source_emits_is_a_member() -> None:
    found = emitted_codes()
    assert len(found) > 30, "the scan found too few error codes: is it still looking?"
    codes = {code for _place, code in found}
    assert [(place, code) for place, code in found if code not in set(values(ErrorCode))] == []
    # The codes the endpoints emit today, so that a new one is added here on purpose.
    assert codes == set(values(ErrorCode)) - {"unsupported_token_type"}


# -- the store writes members, never the bare words ----------------------------------------------

STORE = SOURCE / "store"
# The vocabularies the store writes (the error codes are the server's).
STORED: tuple[type[StrEnum], ...] = (
    SecurityEventKind,
    RevocationCause,
    FeedEntryKind,
    WebhookEventType,
)
WORDS = {value for enum in STORED for value in values(enum)}
# Where a word of them goes: a column, a parameter, a payload key by one of these names.
SLOTS = {"kind", "reason", "revoked_reason", "event_type", "type"}


def _named(expr: ast.expr) -> str | None:
    """What an expression names: `kind`, `x.kind`, `x["kind"]`."""
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return expr.attr
    if isinstance(expr, ast.Subscript) and isinstance(expr.slice, ast.Constant):
        return str(expr.slice.value)
    return None


def _slots_by_position(trees: list[ast.Module]) -> dict[str, set[int]]:
    """For each function the store defines: the positions (after `self`) of its parameters
    named as a slot (`revoke_grant(conn, grant_id, now, reason)`: 3)."""
    found: dict[str, set[int]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names = [a.arg for a in node.args.posonlyargs + node.args.args]
                if names[:1] == ["self"]:
                    names = names[1:]
                slots = {i for i, name in enumerate(names) if name in SLOTS}
                found.setdefault(node.name, set()).update(slots)
    return found


def _word_expressions(tree: ast.AST, slots: dict[str, set[int]]) -> list[ast.expr]:
    """Every expression in a place that holds a word of the stored vocabularies: a slot's
    keyword argument, positional argument or dict value, a `literal(...)`, an element of a set,
    a comparison with a slot, and a constant's value (`CLIENT_DISABLED = ...`)."""
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _named(node.func)
            found += [k.value for k in node.keywords if k.arg in SLOTS]
            if name == "literal" and node.args:
                found.append(node.args[0])
            found += [arg for i, arg in enumerate(node.args) if i in slots.get(name or "", ())]
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value in SLOTS:
                    found.append(value)
        elif isinstance(node, ast.Set):
            found += node.elts
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_named(side) in SLOTS for side in sides):
                found += sides
        elif isinstance(node, ast.Assign) and any(
            (_named(target) or "").isupper() for target in node.targets
        ):
            found.append(node.value)
    return found


def stored_words(root: Path = STORE) -> tuple[list[tuple[str, str]], int]:
    """(place, word) of every bare word of the stored vocabularies in the store's code (its
    migrations are dated records, left as written), and how many members stand in such places."""
    paths = [p for p in sorted(root.rglob("*.py")) if "migrations" not in p.parts]
    trees = [ast.parse(path.read_text(), str(path)) for path in paths]
    slots = _slots_by_position(trees)
    bare: list[tuple[str, str]] = []
    members = 0
    enums = {enum.__name__ for enum in STORED}
    for path, tree in zip(paths, trees, strict=True):
        for expr in _word_expressions(tree, slots):
            if isinstance(expr, ast.Constant) and expr.value in WORDS:
                bare.append((f"{path.relative_to(root.parent)}:{expr.lineno}", expr.value))
            elif (
                isinstance(expr, ast.Attribute)
                and isinstance(expr.value, ast.Name)
                and expr.value.id in enums
            ):
                members += 1
    return bare, members


def test_the_store_writes_members_not_bare_words() -> None:
    bare, members = stored_words()
    assert members >= 12, "the scan found too few members: is it still looking?"
    assert bare == []


def test_the_scan_finds_a_bare_word(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "writes.py").write_text(
        "CLIENT_DISABLED = 'client_disabled'\n"
        "def revoke(conn, grant_id, reason): ...\n"
        "def work(conn, fields):\n"
        "    revoke(conn, 'g', 'admin')\n"
        "    conn.execute(insert(t).values(kind='grant'))\n"
        "    enqueue(conn, {'type': 'grant.revoked'})\n"
        "    KINDS = {'code_reuse'}\n"
        "    if fields['kind'] == 'leeway_retry': ...\n"
        "    literal('access_token')\n"
        # Words of other vocabularies in other places are not these.
        "    status = 'revoked' if fields['status'] == 'revoked' else 'grant'\n"
        "    audit(conn, 'grant.revoke', 'grant')\n"
    )
    bare, _members = stored_words(store)
    assert sorted(word for _place, word in bare) == [
        "access_token",
        "admin",
        "client_disabled",
        "code_reuse",
        "grant",
        "grant.revoked",
        "leeway_retry",
    ]
