"""The console's client page shows the client's policy in force, its scheduled change, its
contact and its integration health; the clients list shows whom a scheduled change would break;
the page's form schedules or cancels a change, checked (CSRF) and audited (issue 28)."""

from __future__ import annotations

import re

import anyio
import pytest
from sqlalchemy import Connection, update
from starlette.testclient import TestClient

from baton.core.client_policy import ClientPolicy, PolicySettings
from baton.core.clock import FakeClock
from baton.store.base import SignalCount
from baton.store.schema import clients
from baton.store.sql import SQLStore
from tests.server.test_console import admin_session, audit_rows, make_admin
from tests.support import RegisteredClient, hidden_inputs

DAY = 86_400


def set_policy(store: SQLStore, client_id: str, policy: ClientPolicy, **more: object) -> None:
    """Writes the client's row as the admin store does (`clients.policy`)."""

    def work(conn: Connection) -> None:
        conn.execute(
            update(clients).where(clients.c.id == client_id).values(policy=policy.stored(), **more)
        )

    anyio.run(store.runner.write, work)


def tighten(store: SQLStore, client_id: str, now: int) -> int:
    """The leeway from 600 s to 60 s in two weeks, report-only; its effective instant."""
    effective_at = now + 14 * DAY
    policy = ClientPolicy().schedule(PolicySettings(leeway=60), now, effective_at, True)
    set_policy(store, client_id, policy)
    return effective_at


def stale_uses(store: SQLStore, client_id: str, now: int) -> None:
    """The client used its old access tokens about 2 minutes after each refresh."""
    delays = {118: 300, 121: 92, 130: 20}
    rows = [
        SignalCount(
            client_id, "stale_access", None, "resource", "gr_1", now - 60, now - 10, 412, delays
        ),
        SignalCount(
            client_id, "would_refuse", "leeway", "resource", "gr_1", now - 60, now - 10, 412, delays
        ),
        SignalCount(
            client_id, "leeway_retry", None, "token", "gr_1", now - 60, now - 20, 3, {5: 3}
        ),
    ]
    anyio.run(store.record_signals, rows)


def signed(html: str) -> dict[str, str]:
    """The policy form's hidden fields on the page: its CSRF token and the version of the
    policy the page shows."""
    hidden = hidden_inputs(html)
    return {"csrf": hidden["csrf"], "policy_version": hidden["policy_version"]}


def text_of(html: str, element_id: str) -> str:
    found = re.search(rf'<(\w+)[^>]*id="{element_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert found is not None, element_id
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found[2])).strip()


@pytest.fixture
def admin(http: TestClient, store: SQLStore, client: RegisteredClient) -> TestClient:
    make_admin(store)
    admin_session(http)
    return http


def test_the_policy_in_force_says_which_knobs_are_the_server_defaults(
    admin: TestClient, store: SQLStore, client: RegisteredClient, clock: FakeClock
) -> None:
    policy = ClientPolicy().schedule(PolicySettings(access_ttl=900), clock.now(), clock.now())
    set_policy(
        store,
        client.id,
        policy,
        contacts='["dev@app.example"]',
        notify_url="https://app.example/hook",
    )
    page = admin.get(f"/admin/clients/{client.id}")
    assert page.status_code == 200
    assert text_of(page.text, "knob-access_ttl").startswith("Access token lifetime 15 min set for")
    assert "server default" in text_of(page.text, "knob-leeway")
    assert "as registered" in text_of(page.text, "knob-require_pkce")
    assert "10 min" in text_of(page.text, "knob-leeway")
    assert text_of(page.text, "scheduled-change") == "None."
    assert text_of(page.text, "contacts") == "dev@app.example"
    assert text_of(page.text, "notify-url") == "https://app.example/hook"


def test_the_scheduled_change_and_the_health_of_a_bad_integration(
    admin: TestClient, store: SQLStore, client: RegisteredClient, clock: FakeClock
) -> None:
    effective_at = tighten(store, client.id, clock.now())
    stale_uses(store, client.id, clock.now())
    page = admin.get(f"/admin/clients/{client.id}").text
    change = text_of(page, "scheduled-change")
    assert "report-only" in change
    assert "2023-11-28 22:13:20 UTC" in change  # the effective date, from the fake clock
    assert "keep working for 60 s (until now 10 min)" in change
    assert "60 s" in text_of(page, "knob-leeway")  # the scheduled value beside the one in force
    stale = text_of(page, "health-stale_access")
    assert stale.startswith("Access tokens used after their refresh token was exchanged 412 ")
    assert "118 s after the exchange 121 s 2023-11-14 22:13" in stale
    assert text_of(page, "health-leeway_retry").startswith("Retries inside the leeway 3 5 s")
    assert text_of(page, "health-reuse") == "Reuse detections 0 — — —"
    assert text_of(page, "health-would_refuse") == "after the shorter leeway: 412"
    assert text_of(page, "health-share") == "1 of 1 (100%)"
    assert "would break this integration" in text_of(page, "affected")
    notice = text_of(page, "integrator-notice")
    assert "exchanged 412 times in the last 7 days, typically 118 s after the exchange" in notice
    assert effective_at > clock.now()


def test_a_client_without_signals_is_not_marked(
    admin: TestClient, store: SQLStore, client: RegisteredClient, clock: FakeClock
) -> None:
    tighten(store, client.id, clock.now())
    page = admin.get(f"/admin/clients/{client.id}").text
    assert text_of(page, "health-stale_access").endswith("exchanged 0 — — —")
    assert text_of(page, "health-share") == "—"
    assert 'id="affected"' not in page


def test_the_clients_list_shows_whom_the_scheduled_change_would_break(
    admin: TestClient, store: SQLStore, client: RegisteredClient, clock: FakeClock
) -> None:
    from tests.support import register_client

    good = register_client(store, name="good")
    quiet = register_client(store, name="quiet")
    for c in (client, good):
        tighten(store, c.id, clock.now())
    stale_uses(store, client.id, clock.now())
    page = admin.get("/admin/clients").text
    rows = {
        cid: re.search(rf"{cid}.*?</tr>", page, re.S)[0]  # type: ignore[index]
        for cid in (client.id, good.id, quiet.id)
    }
    assert "would break it" in rows[client.id] and "report-only" in rows[client.id]
    assert "no breakage seen" in rows[good.id]
    assert "would break it" not in rows[quiet.id] and "report-only" not in rows[quiet.id]


def test_health_counts_only_the_last_seven_days(
    admin: TestClient, store: SQLStore, client: RegisteredClient, clock: FakeClock
) -> None:
    tighten(store, client.id, clock.now())
    stale_uses(store, client.id, clock.now() - 8 * DAY)
    page = admin.get(f"/admin/clients/{client.id}").text
    assert text_of(page, "health-stale_access").endswith("exchanged 0 — — —")


def test_the_form_schedules_a_report_only_change_and_cancels_it(
    admin: TestClient, store: SQLStore, client: RegisteredClient, clock: FakeClock
) -> None:
    page = admin.get(f"/admin/clients/{client.id}")
    form = {
        **signed(page.text),
        "leeway": "60",
        "effective_at": "2023-12-01T09:00",
        "report_only": "on",
    }
    done = admin.post(f"/admin/clients/{client.id}/policy", data=form)
    assert done.status_code == 200, done.text
    assert "Change scheduled (from 2023-12-01 09:00:00 UTC, report-only until then)." in done.text
    change = text_of(done.text, "scheduled-change")
    assert "report-only" in change and "keep working for 60 s" in change
    row = anyio.run(store.get_client, client.id)
    assert row is not None
    pending = row.policy.pending(clock.now())
    assert pending is not None and pending.effective_at == 1_701_421_200 and pending.report_only
    assert any(r["action"] == "client.schedule_policy" for r in audit_rows(store))
    cancelled = admin.post(f"/admin/clients/{client.id}/policy/cancel", data=signed(done.text))
    assert "The scheduled change was cancelled." in cancelled.text
    assert text_of(cancelled.text, "scheduled-change") == "None."


def test_the_form_refuses_what_cannot_be(
    admin: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    form = signed(admin.get(f"/admin/clients/{client.id}").text)
    url = f"/admin/clients/{client.id}/policy"
    undated = admin.post(url, data={**form, "leeway": "60"})
    assert undated.status_code == 400
    assert "A change without an effective date must be report-only." in undated.text
    empty = admin.post(url, data={**form, "report_only": "on"})
    assert empty.status_code == 400 and "Set at least one setting to change." in empty.text
    words = admin.post(url, data={**form, "leeway": "a minute", "report_only": "on"})
    assert words.status_code == 400 and "whole number of seconds" in words.text
    forged = admin.post(url, data={**form, "csrf": "forged", "leeway": "60", "report_only": "on"})
    assert forged.status_code == 403
    row = anyio.run(store.get_client, client.id)
    assert row is not None and row.policy == ClientPolicy()


def test_a_public_client_cannot_be_told_to_stop_rotating(
    admin: TestClient, store: SQLStore, clock: FakeClock
) -> None:
    from tests.support import register_client

    public = register_client(store, public=True, name="spa")
    form = signed(admin.get(f"/admin/clients/{public.id}").text)
    refused = admin.post(
        f"/admin/clients/{public.id}/policy",
        data={**form, "rotate": "no", "effective_at": "2023-12-01T09:00"},
    )
    assert refused.status_code == 400
    assert "A public client&#39;s refresh tokens always rotate" in refused.text
    row = anyio.run(store.get_client, public.id)
    assert row is not None and row.policy.pending(clock.now()) is None
