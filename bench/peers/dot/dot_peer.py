"""django-oauth-toolkit, the peer for `bench/compare.py`: settings, URLs, WSGI app and seeding.

One module is the whole Django project (`DJANGO_SETTINGS_MODULE=dot_peer`), served by gunicorn
(`dot_peer:application`) from its own virtualenv under `bench/.scratch/`. Rotation is on
(`ROTATE_REFRESH_TOKEN`) with a grace period of 600 s (`REFRESH_TOKEN_GRACE_PERIOD_SECONDS`),
like Baton's leeway. The database comes from DOT_BENCH_DB: a SQLite file path (WAL mode,
`BEGIN IMMEDIATE` transactions so two workers queue on the write lock instead of failing) or a
postgresql:// URL. The client's secret is stored unhashed (`hash_client_secret=False`): DOT's
default PBKDF2 hash costs about 0.1 s per request and would measure only that.

    python dot_peer.py seed --grants N   (migrates, then prints the client and tokens as JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

DB = os.environ.get("DOT_BENCH_DB", "dot-bench.db")


def _database(url: str) -> dict[str, Any]:
    if url.startswith("postgresql://"):
        parts = urlsplit(url)
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": parts.username or "postgres",
            "PASSWORD": parts.password or "",
            "HOST": parts.hostname or "127.0.0.1",
            "PORT": str(parts.port or 5432),
            "CONN_MAX_AGE": None,  # persistent connections, one per worker
        }
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": url,
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 60,
            "init_command": "PRAGMA journal_mode=WAL;",
        },
    }


SECRET_KEY = "bench-only-" + "x" * 40
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "dot_peer"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "oauth2_provider",
]
MIDDLEWARE: list[str] = []
DATABASES = {"default": _database(DB)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
OAUTH2_PROVIDER = {
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 600,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    "SCOPES": {"read": "read", "write": "write", "introspection": "introspection"},
}

if os.environ.get("DJANGO_SETTINGS_MODULE") == "dot_peer":
    import django

    django.setup()

    from django.core.wsgi import get_wsgi_application
    from django.urls import include, path

    urlpatterns = [path("o/", include("oauth2_provider.urls", namespace="oauth2_provider"))]
    application = get_wsgi_application()


def seed(grant_count: int) -> dict[str, Any]:
    """Migrates, then creates one confidential client and `grant_count` token pairs, in bulk."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone
    from oauth2_provider.models import AccessToken, Application, RefreshToken

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(f"bench-{secrets.token_hex(4)}")
    client_secret = secrets.token_urlsafe(32)
    client = Application.objects.create(
        name="bench",
        user=user,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris="http://127.0.0.1:9000/callback",
        client_secret=client_secret,
        hash_client_secret=False,
    )
    expires = timezone.now() + timedelta(seconds=3600)
    access = AccessToken.objects.bulk_create(
        AccessToken(
            user=user,
            application=client,
            token=secrets.token_urlsafe(30),
            expires=expires,
            scope="read write",
        )
        for _ in range(grant_count)
    )
    refresh = RefreshToken.objects.bulk_create(
        RefreshToken(
            user=user, application=client, token=secrets.token_urlsafe(30), access_token=token
        )
        for token in access
    )
    return {
        "client_id": client.client_id,
        "client_secret": client_secret,
        "pairs": [[a.token, r.token] for a, r in zip(access, refresh, strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Seed the django-oauth-toolkit peer's database.")
    parser.add_argument("command", choices=["seed"])
    parser.add_argument("--grants", type=int, required=True)
    args = parser.parse_args()
    json.dump(seed(args.grants), sys.stdout)


if __name__ == "__main__":
    os.environ["DJANGO_SETTINGS_MODULE"] = "dot_peer"
    sys.modules.setdefault("dot_peer", sys.modules["__main__"])
    import django

    django.setup()
    main()
