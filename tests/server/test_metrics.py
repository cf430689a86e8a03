"""/metrics: counters move by exactly what a scripted scenario did; labels are route templates;
the endpoint is off, token-protected or public as configured."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from baton.core.policy import RetryPolicy
from baton.server.observability.metrics import Metrics
from tests.support import (
    REDIRECT_URI,
    authorize,
    first_pair,
    refresh,
    register_client,
    register_user,
    running_app,
)

METRICS_TOKEN = "metrics-scrape-credential"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(http: TestClient) -> Samples:
    response = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_a_scripted_scenario_moves_each_counter_by_exactly_its_events(
    database: Path | str,
) -> None:
    with running_app(database, metrics_token=METRICS_TOKEN) as (http, store, clock):
        metrics: Metrics = http.app.state.metrics  # type: ignore[attr-defined]
        metrics.grants_cache_seconds = 0
        register_user(store)
        client = register_client(store)
        before = scrape(http)
        assert value(before, "baton_active_grants") == 0

        # A code flow, two rotations and one retry inside the leeway (replay).
        pair = first_pair(http, client)
        rotated = refresh(http, client, pair["refresh_token"])
        assert rotated.status_code == 200
        assert refresh(http, client, pair["refresh_token"]).json() == rotated.json()
        assert refresh(http, client, rotated.json()["refresh_token"]).status_code == 200
        # After the leeway the first token is a replay: reuse detected, the grant revoked.
        clock.advance(601)
        reused = refresh(http, client, pair["refresh_token"])
        assert reused.status_code == 400
        # A second grant, revoked by its client (RFC 7009), and an access token of a third.
        second = first_pair(http, client)
        revoke = http.post("/revoke", data={"token": second["refresh_token"]}, auth=client.basic)
        assert revoke.status_code == 200
        third = first_pair(http, client)
        revoke = http.post("/revoke", data={"token": third["access_token"]}, auth=client.basic)
        assert revoke.status_code == 200
        # A code redeemed twice: the second redemption revokes the fourth grant.
        query, verifier = authorize(http, client)
        redemption = {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            **client.auth_params(),
        }
        assert http.post("/token", data=redemption).status_code == 200
        assert http.post("/token", data=redemption).status_code == 400

        after = scrape(http)

    def delta(name: str, **labels: str) -> float:
        return moved(before, after, name, **labels)

    assert delta("baton_refresh_rotations_total") == 2
    assert delta("baton_leeway_retries_total", policy="replay") == 1
    assert delta("baton_leeway_retries_total", policy="fork") == 0
    assert delta("baton_reuse_detections_total", kind="refresh_token") == 1
    assert delta("baton_reuse_detections_total", kind="code") == 1
    assert delta("baton_revocations_total", what="grant", cause="reuse") == 1
    assert delta("baton_revocations_total", what="grant", cause="code_reuse") == 1
    assert delta("baton_revocations_total", what="grant", cause="rfc7009") == 1
    assert delta("baton_revocations_total", what="access_token", cause="rfc7009") == 1
    # Four grants were made; the first, second and fourth are revoked.
    assert value(after, "baton_active_grants") == 1
    # /token answered: 4 codes and 3 refreshes; refused: the reuse and the code replay.
    token = {"route": "/token", "method": "POST"}
    assert delta("baton_http_requests_total", status="200", **token) == 7
    assert delta("baton_http_requests_total", status="400", **token) == 2
    assert delta("baton_http_requests_total", route="/revoke", method="POST", status="200") == 2
    assert delta("baton_http_request_duration_seconds_count", route="/token") == 9
    assert value(after, "baton_http_requests_total", route="/metrics", method="GET", status="200")


def test_a_retry_under_fork_counts_as_a_fork_not_a_rotation(tmp_path: Path) -> None:
    with running_app(tmp_path, retry=RetryPolicy.FORK, metrics_public=True) as (http, store, _):
        register_user(store)
        client = register_client(store)
        pair = first_pair(http, client)
        assert refresh(http, client, pair["refresh_token"]).status_code == 200
        assert refresh(http, client, pair["refresh_token"]).status_code == 200
        samples = scrape(http)
    assert value(samples, "baton_refresh_rotations_total") == 1
    assert value(samples, "baton_leeway_retries_total", policy="fork") == 1
    assert value(samples, "baton_leeway_retries_total", policy="replay") == 0


def test_requests_are_labelled_by_route_template_never_the_raw_path(tmp_path: Path) -> None:
    with running_app(tmp_path, metrics_public=True) as (http, _store, _clock):
        for n in range(3):
            assert http.get(f"/no/such/path/{n}?token=x").status_code == 404
        assert http.delete("/token").status_code == 405
        assert http.request("BREW", "/token").status_code == 405
        samples = scrape(http)
    routes = {dict(labels).get("route") for name, labels in samples if "route" in dict(labels)}
    assert not any(route and route.startswith("/no/") for route in routes)
    assert (
        value(samples, "baton_http_requests_total", route="<unmatched>", method="GET", status="404")
        == 3
    )
    assert (
        value(samples, "baton_http_requests_total", route="/token", method="DELETE", status="405")
        == 1
    )
    assert (
        value(samples, "baton_http_requests_total", route="/token", method="OTHER", status="405")
        == 1
    )


def test_metrics_are_off_by_default_and_need_the_token_when_one_is_set(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, _store, _clock):
        assert http.get("/metrics").status_code == 404
    (tmp_path / "t").mkdir()
    with running_app(tmp_path / "t", metrics_token=METRICS_TOKEN) as (http, _store, _clock):
        refused = http.get("/metrics")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        wrong = http.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        assert scrape(http)  # the right token


def test_pool_use_is_reported_for_a_pooled_database(tmp_path: Path) -> None:
    with running_app(tmp_path, metrics_public=True) as (http, _store, _clock):
        samples = scrape(http)
    assert value(samples, "baton_db_pool_connections_capacity") > 0
    assert ("baton_db_pool_connections_in_use", ()) in samples


def test_the_openapi_document_lists_metrics_exactly_when_they_are_served(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, _store, _clock):
        assert "/metrics" not in http.get("/openapi.json").json()["paths"]
    (tmp_path / "t").mkdir()
    with running_app(tmp_path / "t", metrics_token=METRICS_TOKEN) as (http, _store, _clock):
        operation = http.get("/openapi.json").json()["paths"]["/metrics"]["get"]
    assert set(operation["responses"]) == {"200", "401"}
