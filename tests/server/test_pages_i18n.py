"""The pages in the reader's language (the authorization request's `ui_locales`, then
`Accept-Language`, then English), the catalogs whole, and a consent page that says who asks,
where the answer goes and what each scope means."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from starlette.testclient import TestClient

from baton.core.tokens import TokenKind, mint, random_id
from baton.locale import HERE, mo_bytes, read_po
from baton.locale.extract import all_messages, problems
from baton.server.endpoints.consent import return_host
from baton.store.base import Client
from baton.store.sql import SQLStore
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    authorization_request,
    register_client,
    register_user,
    running_app,
    sign_in,
)

KEK = "k" * 43


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, SQLStore]]:
    with running_app(tmp_path, key_encryption_key=KEK) as (http, store, _):
        register_user(store)
        yield http, store


def lang(html: str) -> str:
    found = re.search(r'<html lang="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def consent(
    http: TestClient, client: RegisteredClient, scope: str = "read write", **extra: str
) -> str:
    """The consent page's HTML, alice signed in on the way."""
    _, params = authorization_request(client, scope=scope)
    params.update(extra)
    response = http.get("/authorize", params=params)
    if response.status_code == 303:
        assert sign_in(http, response.headers["location"]).status_code == 303
        response = http.get("/authorize", params=params)
    assert response.status_code == 200, response.text
    return response.text


# -- the language of a page -----------------------------------------------------------------------


def test_ui_locales_chooses_the_login_and_consent_pages_language(
    app: tuple[TestClient, SQLStore],
) -> None:
    http, store = app
    client = register_client(store)
    _, params = authorization_request(client)
    params["ui_locales"] = "tlh fr-CA de"  # Klingon unknown: the next one Baton speaks
    to_login = http.get("/authorize", params=params, headers={"Accept-Language": "de"})
    login = http.get(to_login.headers["location"], headers={"Accept-Language": "de"})
    assert lang(login.text) == "fr"  # ui_locales first, inside the login page's `next`
    assert "Se connecter" in login.text and "Mot de passe" in login.text
    # A wrong password: the login form's error, in French too.
    fields = dict(re.findall(r'name="(csrf|next)" value="([^"]*)"', login.text))
    fields["next"] = fields["next"].replace("&amp;", "&")
    wrong = http.post("/login", data={**fields, "username": "alice", "password": "nope"})
    assert lang(wrong.text) == "fr"
    assert "Nom d\u2019utilisateur inconnu ou mot de passe erroné." in wrong.text
    page = consent(http, client, ui_locales="fr")
    assert lang(page) == "fr" and "Autoriser" in page and "Refuser" in page
    assert "garder l\u2019accès en votre absence" in page and "90 jours" in page


def test_accept_language_chooses_by_q_values(app: tuple[TestClient, SQLStore]) -> None:
    http, _ = app
    for header, expected, words in (
        ("de", "de", "Abmelden"),
        ("de-AT, en;q=0.5", "de", "Abmelden"),
        ("en;q=0.4, fr;q=0.9, de;q=0.8", "fr", "Se déconnecter"),
        ("fr;q=0, de;q=0.1", "de", "Abmelden"),
        ("xx, *", "en", "Sign out"),
        ("", "en", "Sign out"),
        ("q=;;,,de;q=abc", "en", "Sign out"),
    ):
        page = http.get("/logout", headers={"Accept-Language": header})
        assert page.status_code == 200
        assert lang(page.text) == expected, header
        assert f"<h1>{words}</h1>" in page.text, header


def test_an_unknown_language_gets_english(app: tuple[TestClient, SQLStore]) -> None:
    http, store = app
    page = consent(http, register_client(store), ui_locales="tlh")
    assert lang(page) == "en" and "Allow" in page and "keep access while you are away" in page
    home = http.get("/", headers={"Accept-Language": "ja"})
    assert lang(home.text) == "en" and "Baton authorization server" in home.text


def test_the_error_page_says_its_message_in_the_reader_s_language(
    app: tuple[TestClient, SQLStore],
) -> None:
    http, store = app
    _, params = authorization_request(register_client(store))
    params["client_id"] = "nobody"
    page = http.get("/authorize", params=params, headers={"Accept-Language": "de"})
    assert page.status_code == 400
    assert "Diese Anfrage kann nicht fortgesetzt werden" in page.text
    assert "Die Anfrage nennt einen unbekannten Client." in page.text
    french = http.get(
        "/session/end", params={"id_token_hint": "x"}, headers={"Accept-Language": "fr"}
    )
    assert lang(french.text) == "fr" and "Cette demande ne peut pas aboutir" in french.text


# -- the consent page ----------------------------------------------------------------------------


def client_with(
    store: SQLStore, *, client_uri: str | None, redirect_uri: str = REDIRECT_URI
) -> RegisteredClient:
    secret = mint(TokenKind.CLIENT_SECRET)
    client = Client(
        id=random_id("cl_"),
        name="Acme Calendar",
        secret_digest=secret.digest,
        is_public=False,
        is_resource_server=False,
        redirect_uris=(redirect_uri,),
        scope="openid profile offline_access calendar:read billing",
        created_at=0,
        client_uri=client_uri,
    )
    anyio.run(store.create_client, client)
    return RegisteredClient(client.id, secret.plaintext)


def test_the_consent_page_names_the_client_its_homepage_its_host_and_its_scopes(
    app: tuple[TestClient, SQLStore],
) -> None:
    http, store = app
    anyio.run(store.describe_scope, "calendar:read", "See your <calendars>", 0)
    anyio.run(store.describe_scope, "openid", "operator words never shown for openid", 0)
    redirect = "https://calendar.acme.example/oauth/cb"
    client = client_with(store, client_uri="https://acme.example/about", redirect_uri=redirect)
    _, params = authorization_request(client, scope="openid calendar:read billing")
    params["redirect_uri"] = redirect
    params["nonce"] = "n"
    first = http.get("/authorize", params=params)
    sign_in(http, first.headers["location"])
    page = http.get("/authorize", params=params).text
    assert "Acme Calendar" in page
    assert '<a href="https://acme.example/about"' in page
    assert "you go back to <strong>calendar.acme.example</strong>" in page
    # The registered words, escaped; the OpenID scope's own words; an unregistered name bare.
    assert "See your &lt;calendars&gt; (<code>calendar:read</code>)" in page
    assert "know who you are" in page and "operator words" not in page
    assert "<li><code>billing</code></li>" in page
    german = http.get("/authorize", params=params, headers={"Accept-Language": "de"}).text
    assert "wissen, wer Sie sind" in german and "See your &lt;calendars&gt;" in german
    assert "Sie kehren zu <strong>calendar.acme.example</strong> zurück" in german


def test_a_homepage_that_is_not_a_web_page_is_not_a_link(
    app: tuple[TestClient, SQLStore],
) -> None:
    http, store = app
    client = client_with(store, client_uri="javascript:alert(1)")
    page = consent(http, client, scope="calendar:read")
    assert "javascript:" not in page and "About this application" not in page
    # The default redirect URI is a loopback one: an application on this device.
    assert "an application on this device" in page


@pytest.mark.parametrize(
    ("uri", "host"),
    [
        ("https://app.example/cb", "app.example"),
        ("https://APP.example.:8443/cb?x=1", "app.example"),
        ("http://127.0.0.1:9000/callback", None),
        ("http://[::1]:8123/cb", None),
        ("http://localhost:8000/cb", None),
        ("com.example.app:/oauth2redirect", None),
        ("https://[2001:db8::1]/cb", "2001:db8::1"),
    ],
)
def test_the_host_the_page_names(uri: str, host: str | None) -> None:
    assert return_host(uri) == host


# -- the catalogs --------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["fr", "de"])
def test_every_message_of_the_pages_is_translated(language: str) -> None:
    """Every `_()`/`{% trans %}` of the templates and `N_()` of the code has a translation in
    the catalog, not fuzzy, with the same placeholders."""
    messages = all_messages()
    assert len(messages) > 40  # the extraction found the pages' words
    po = HERE / language / "LC_MESSAGES" / "baton.po"
    assert list(problems(po, messages)) == []


def test_a_gap_in_a_catalog_is_found(tmp_path: Path) -> None:
    po = tmp_path / "baton.po"
    po.write_text(
        '#, fuzzy\nmsgid "Sign in"\nmsgstr "Connexion ?"\n\n'
        'msgid "Continue as %(user)s"\nmsgstr "Continuer en tant que %(usr)s"\n',
        encoding="utf-8",
    )
    found = list(problems(po, all_messages()))
    assert any("untranslated 'Sign in'" in p for p in found)
    assert any("placeholders of 'Continue as %(user)s'" in p for p in found)
    assert any("missing 'Allow'" in p for p in found)


def test_a_po_file_is_read_as_gettext_reads_it() -> None:
    import gettext
    import io

    text = (
        'msgid ""\nmsgstr ""\n"Plural-Forms: nplurals=2; plural=(n > 1);\\n"\n\n'
        '# a comment\nmsgid "a \\"quoted\\"\\n"\n"line"\nmsgstr "une \\"citée\\"\\n"\n"ligne"\n\n'
        '#, fuzzy\nmsgid "guess"\nmsgstr "devinette"\n\n'
        'msgid "empty"\nmsgstr ""\n\n'
        'msgctxt "menu"\nmsgid "File"\nmsgstr "Fichier"\n\n'
        'msgid "%(num)d day"\nmsgid_plural "%(num)d days"\nmsgstr[0] "%(num)d jour"\n'
        'msgstr[1] "%(num)d jours"\n'
    )
    catalog = gettext.GNUTranslations(io.BytesIO(mo_bytes(read_po(text))))
    assert catalog.gettext('a "quoted"\nline') == 'une "citée"\nligne'
    assert catalog.gettext("guess") == "guess"  # fuzzy: not used
    assert catalog.gettext("empty") == "empty"  # untranslated: the English, not ""
    assert catalog.pgettext("menu", "File") == "Fichier"
    assert catalog.ngettext("%(num)d day", "%(num)d days", 1) == "%(num)d jour"
    assert catalog.ngettext("%(num)d day", "%(num)d days", 0) == "%(num)d jour"  # French: n > 1
    assert catalog.ngettext("%(num)d day", "%(num)d days", 2) == "%(num)d jours"


def test_a_posted_form_s_ui_locales_noted_by_its_handler_chooses_the_language() -> None:
    """The body of a POST is read once, by its handler: noting its `ui_locales` on the
    request's state is how the page it answers with learns it."""
    from starlette.requests import Request

    from baton.server.runtime.pages import Pages

    request = Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/authorize",
            "query_string": b"",
            "headers": [(b"accept-language", b"fr")],
            "state": {},
        }
    )
    pages = Pages()
    assert pages.language(request) == "fr"
    request.state.ui_locales = "de"
    assert pages.language(request) == "de"


# -- the code's messages, in the reader's language ---------------------------------------------


def test_the_login_lockout_says_its_wait_in_german(tmp_path: Path) -> None:
    """The lockout's message has a value (the seconds to wait): one catalog entry, the number
    put in the translated sentence."""
    with running_app(tmp_path, rate_limit_login=0) as (http, store, _):
        register_user(store)
        http.headers["Accept-Language"] = "de"
        login = "/login?next=/authorize%3Fclient_id%3Dx"
        for _ in range(5):
            wrong = sign_in(http, login, password="wrong")
            assert wrong.status_code == 401
        assert "Unbekannter Benutzername oder falsches Passwort." in wrong.text
        locked = sign_in(http, login)
        assert locked.status_code == 429
        wait = locked.headers["retry-after"]
        assert lang(locked.text) == "de"
        said = (
            f"Zu viele fehlgeschlagene Anmeldungen für dieses Konto. Versuchen Sie es in {wait} s"
        )
        assert said in locked.text
        assert "Try again" not in locked.text
        # The same sentence in English keeps its words and its number.
        del http.headers["Accept-Language"]
        english = sign_in(http, login)
        assert f"Try again in {english.headers['retry-after']} s." in english.text


def test_the_login_page_s_notice_is_translated(app: tuple[TestClient, SQLStore]) -> None:
    http, _ = app
    page = http.get("/login", params={"reason": "login"}, headers={"Accept-Language": "fr"})
    assert "L\u2019application vous demande de vous reconnecter." in page.text


def test_the_authorization_request_s_page_errors_in_french(
    app: tuple[TestClient, SQLStore],
) -> None:
    http, store = app
    french = {"Accept-Language": "fr"}
    _, params = authorization_request(register_client(store))
    unknown = http.get("/authorize", params={**params, "client_id": "nobody"}, headers=french)
    assert unknown.status_code == 400 and lang(unknown.text) == "fr"
    assert "La demande nomme un client inconnu." in unknown.text
    nameless = {k: v for k, v in params.items() if k != "client_id"}
    missing = http.get("/authorize", params=nameless, headers=french)
    assert "La demande ne nomme aucun client (client_id manque)." in missing.text
    # A value in the sentence: the rule's technical reason, as the rule words it.
    legacy = register_client(store, redirect_uris=("http://app.example/cb",))
    _, params = authorization_request(legacy)
    params.pop("redirect_uri")
    refused = http.get("/authorize", params=params, headers=french)
    assert refused.status_code == 400 and "location" not in refused.headers
    assert "L\u2019URI de redirection du client n\u2019est pas autorisée : redirect URI" in (
        refused.text
    )
    # A request that cannot be read: the parser's reason inside a translated sentence.
    twice = http.get(f"/authorize?client_id={legacy.id}&client_id=x", headers=french)
    assert twice.status_code == 400
    assert "La demande est illisible : parameter &#39;client_id&#39; is repeated" in twice.text


def test_a_login_app_s_broken_link_is_said_in_german(app: tuple[TestClient, SQLStore]) -> None:
    http, _ = app
    page = http.get("/authorize/continue", headers={"Accept-Language": "de"})
    assert page.status_code == 400
    assert "Dieser Link nennt keine Anmeldung, die fortgesetzt werden kann." in page.text


def test_a_sign_out_refusal_with_its_reason_in_german(app: tuple[TestClient, SQLStore]) -> None:
    http, _ = app
    page = http.get(
        "/session/end",
        params={"post_logout_redirect_uri": "https://app.example/bye"},
        headers={"Accept-Language": "de"},
    )
    assert page.status_code == 400
    assert "Die Abmeldung nennt keinen bekannten Client" in page.text


def test_an_upstream_refusal_names_the_provider_in_german(
    app: tuple[TestClient, SQLStore],
) -> None:
    """The provider's name is a value of the translated sentence, escaped like any value."""
    import httpx

    from baton.core.upstream import DEFAULT_SCOPE, UpstreamProvider
    from baton.server.endpoints.upstream import Upstreams

    http, store = app
    provider = UpstreamProvider(
        "acme",
        "Acme <ID>",
        "https://id.acme.example",
        "baton",
        None,
        DEFAULT_SCOPE,
        False,
        False,
        0,
    )
    anyio.run(store.add_upstream, provider)
    broken = httpx.MockTransport(lambda _: httpx.Response(500))
    http.app.state.upstreams = Upstreams(transport=broken)  # type: ignore[attr-defined]
    german = http.get("/login/upstream/acme", headers={"Accept-Language": "de"})
    assert german.status_code == 502 and lang(german.text) == "de"
    assert "Acme &lt;ID&gt; hat mit einem Fehler geantwortet (500)." in german.text
    assert "Zurück zur Anmeldeseite" in german.text
    english = http.get("/login/upstream/acme")
    assert "Acme &lt;ID&gt; answered with an error (500)." in english.text
    unknown = http.get("/login/upstream/nobody", headers={"Accept-Language": "fr"})
    assert unknown.status_code == 404
    assert "Ce fournisseur de connexion n\u2019existe pas." in unknown.text


def test_the_store_s_upstream_refusals_are_catalog_messages() -> None:
    """The store words why an upstream account finds no user once (core's messages), and the
    page fills in the provider's name in the reader's language."""
    from baton.core.upstream import DELETED, NOT_LINKED
    from baton.server.runtime.pages import Pages

    pages = Pages()
    linked = pages.catalog("fr").gettext(NOT_LINKED) % {"provider": "Acme"}
    assert linked == "Aucun compte n\u2019est lié à ce compte Acme."
    deleted = pages.catalog("de").gettext(DELETED) % {"provider": "Acme"}
    assert deleted.startswith("Das Konto hier zu diesem Acme-Konto wurde gelöscht")
