"""`--theme-dir`: a product's own templates, static files and words in place of Baton's, per
app, and nothing outside the theme's and Baton's static folders served."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from baton.server.runtime.pages import Pages, check_theme
from tests.support import running_app


@pytest.fixture
def theme(tmp_path: Path) -> Path:
    folder = tmp_path / "theme"
    (folder / "templates").mkdir(parents=True)
    (folder / "static").mkdir()
    (folder / "templates" / "logged_out.html").write_text(
        '{% extends "base.html" %}{% block content %}'
        '<h1 class="acme">{{ _("Signed out") }} of Acme</h1>{% endblock %}'
    )
    (folder / "templates" / "base.html").write_text(
        '<!doctype html><html lang="{{ lang }}"><head><title>Acme</title>'
        '<link rel="stylesheet" href="/static/acme.css"></head>'
        "<body>{% block content %}{% endblock %}</body></html>"
    )
    (folder / "static" / "acme.css").write_text("body { color: rebeccapurple }\n")
    (folder / "static" / "baton.css").write_text("/* the theme's own */\n")
    (folder / "secret.txt").write_text("not to be served\n")
    messages = folder / "locale" / "fr" / "LC_MESSAGES"
    messages.mkdir(parents=True)
    (messages / "baton.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "Signed out"\nmsgstr "Au revoir"\n',
        encoding="utf-8",
    )
    return folder


def test_a_theme_replaces_a_template_and_a_static_file(tmp_path: Path, theme: Path) -> None:
    with running_app(tmp_path, theme_dir=str(theme)) as (http, _, _):
        page = http.get("/logout")  # a built-in template, under the theme's base.html
        assert page.status_code == 200
        assert "<title>Acme</title>" in page.text and "/static/acme.css" in page.text
        themed = http.post("/logout", data={"csrf": "x"})  # the form expired: the error page
        assert "<title>Acme</title>" in themed.text
        acme = http.get("/static/acme.css")
        assert acme.status_code == 200 and "rebeccapurple" in acme.text
        assert acme.headers["content-type"].startswith("text/css")
        assert http.get("/static/baton.css").text == "/* the theme's own */\n"
        # Not in the theme: the built-in one.
        assert http.get("/static/admin.css").status_code == 200


def test_the_theme_is_the_app_s_own(tmp_path: Path, theme: Path) -> None:
    """Two apps in one process: the themed one shows the theme, the other Baton's pages."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_app(tmp_path / "a", theme_dir=str(theme)) as (themed, _, _),
        running_app(tmp_path / "b") as (plain, _, _),
    ):
        for _ in range(2):  # either order, each app's cache
            assert "<title>Acme</title>" in themed.get("/logout").text
            assert "<title>Acme</title>" not in plain.get("/logout").text
            assert "rebeccapurple" not in plain.get("/static/baton.css").text
            assert plain.get("/static/acme.css").status_code == 404


def test_a_theme_s_catalog_comes_before_the_built_in_one(tmp_path: Path, theme: Path) -> None:
    with running_app(tmp_path, theme_dir=str(theme)) as (http, _, _):
        french = http.get("/logout", headers={"Accept-Language": "fr"}).text
        assert "Se déconnecter" in french  # the built-in French, where the theme says nothing
    pages = Pages(theme)
    assert pages.catalog("fr").gettext("Signed out") == "Au revoir"
    assert pages.catalog("fr").gettext("Sign in") == "Se connecter"
    assert Pages().catalog("fr").gettext("Signed out") == "Déconnecté"


@pytest.mark.parametrize(
    "path",
    [
        "/static/../secret.txt",
        "/static/..%2Fsecret.txt",
        "/static/%2E%2E%2Fsecret.txt",
        "/static/..%5Csecret.txt",
        "/static/.hidden",
        "/static/..",
        "/static/%2Fetc%2Fpasswd",
        "/static/sub%2Facme.css",
        "/static/nothing.css",
        "/static/",
    ],
)
def test_nothing_outside_the_static_folders_is_served(
    tmp_path: Path, theme: Path, path: str
) -> None:
    (theme / "static" / ".hidden").write_text("hidden\n")
    with running_app(tmp_path, theme_dir=str(theme)) as (http, _, _):
        response = http.get(path)
        # (The client itself resolves a literal `..`: what reaches the server is then no
        # static path at all.)
        assert response.status_code == 404 or response.request.url.path == "/", path
        assert "not to be served" not in response.text and "hidden" not in response.text


def test_a_link_out_of_the_static_folder_is_refused(tmp_path: Path, theme: Path) -> None:
    (theme / "static" / "escape.css").symlink_to(theme / "secret.txt")
    with running_app(tmp_path, theme_dir=str(theme)) as (http, _, _):
        assert http.get("/static/escape.css").status_code == 404
    assert Pages(theme).static_file("acme.css") == theme / "static" / "acme.css"


def test_a_broken_theme_is_reported_before_serving(tmp_path: Path, theme: Path) -> None:
    assert check_theme(theme) is None
    assert "does not exist" in (check_theme(tmp_path / "nowhere") or "")
    (theme / "templates" / "login.html").write_text("{% block content %}{% endblok %}")
    assert "login.html" in (check_theme(theme) or "")
    (theme / "templates" / "login.html").unlink()
    po = theme / "locale" / "fr" / "LC_MESSAGES" / "baton.po"
    po.write_text('msgid "Signed out\nmsgstr "x"\n')
    assert "baton.po:1" in (check_theme(theme) or "")


def test_baton_serve_refuses_a_missing_theme_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from baton.cli import main
    from tests.support import migrated_store

    anyio.run(migrated_store(tmp_path / "baton.db").close)
    db = f"sqlite:///{tmp_path / 'baton.db'}"
    result = CliRunner().invoke(main, ["serve", "--db", db, "--theme-dir", str(tmp_path / "no")])
    assert result.exit_code == 1
    assert "--theme-dir: theme folder" in result.output and "does not exist" in result.output
