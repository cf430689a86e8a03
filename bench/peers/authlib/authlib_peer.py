"""Authlib's Flask authorization server, the peer for `bench/compare.py`.

Served by gunicorn (`authlib_peer:app`) from its own virtualenv under `bench/.scratch/`. It
follows Authlib's documented recipe for a SQLAlchemy-backed server: the `sqla_oauth2` mixins, a
`RefreshTokenGrant` with `INCLUDE_NEW_REFRESH_TOKEN = True` (rotation: every exchange returns a
new access and refresh token and revokes the presented one; Authlib has no grace period), and
the RFC 7009 / RFC 7662 endpoints. The database is SQLite in WAL mode with `BEGIN IMMEDIATE`
transactions, so two gunicorn workers queue on the write lock instead of failing.

    python authlib_peer.py seed --grants N   (prints the client and tokens as JSON)

The database file comes from AUTHLIB_BENCH_DB. Client secrets are stored as issued (Authlib's
mixin compares them in constant time), the fastest honest configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.sqla_oauth2 import (
    OAuth2ClientMixin,
    OAuth2TokenMixin,
    create_query_client_func,
    create_revocation_endpoint,
    create_save_token_func,
)
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask
from sqlalchemy import Column, ForeignKey, Integer, String, create_engine, event, insert
from sqlalchemy.orm import DeclarativeBase, scoped_session, sessionmaker

DB_PATH = os.environ.get("AUTHLIB_BENCH_DB", "authlib-bench.db")
ACCESS_TTL = 3600

engine = create_engine(f"sqlite:///{DB_PATH}", connect_args={"timeout": 60})


@event.listens_for(engine, "connect")
def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA busy_timeout=60000")


@event.listens_for(engine, "begin")
def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


session = scoped_session(sessionmaker(bind=engine))


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "user"
    id = Column(Integer, primary_key=True)
    username = Column(String(64), unique=True, nullable=False)

    def get_user_id(self) -> int:
        return int(self.id)  # type: ignore[arg-type]


class Client(Base, OAuth2ClientMixin):
    __tablename__ = "oauth2_client"
    id = Column(Integer, primary_key=True)
    user_id = Column(Integer, ForeignKey("user.id", ondelete="CASCADE"))


class Token(Base, OAuth2TokenMixin):
    __tablename__ = "oauth2_token"
    id = Column(Integer, primary_key=True)
    user_id = Column(Integer, ForeignKey("user.id", ondelete="CASCADE"))


class RefreshTokenGrant(grants.RefreshTokenGrant):
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        token = session.query(Token).filter_by(refresh_token=refresh_token).first()
        if token is not None and not token.refresh_token_revoked_at:
            return token
        return None

    def authenticate_user(self, refresh_token: Token) -> User | None:
        return session.get(User, refresh_token.user_id)

    def revoke_old_credential(self, refresh_token: Token) -> None:
        now = int(time.time())
        refresh_token.refresh_token_revoked_at = now  # type: ignore[assignment]
        refresh_token.access_token_revoked_at = now  # type: ignore[assignment]
        session.add(refresh_token)
        session.commit()


class Introspection(IntrospectionEndpoint):
    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        if token_type_hint == "refresh_token":
            return session.query(Token).filter_by(refresh_token=token_string).first()
        token = session.query(Token).filter_by(access_token=token_string).first()
        if token is None:
            token = session.query(Token).filter_by(refresh_token=token_string).first()
        return token

    def introspect_token(self, token: Token) -> dict[str, Any]:
        return {
            "active": True,
            "client_id": token.client_id,
            "token_type": token.token_type,
            "scope": token.get_scope(),
            "sub": str(token.user_id),
            "exp": token.issued_at + token.expires_in,  # type: ignore[operator]
            "iat": token.issued_at,
        }

    def check_permission(self, token: Token, client: Client, request: Any) -> bool:
        return token.check_client(client)  # a client introspects its own tokens


app = Flask(__name__)
app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"refresh_token": ACCESS_TTL}
app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True  # without it no refresh token is issued
server = AuthorizationServer(
    app,
    query_client=create_query_client_func(session, Client),
    save_token=create_save_token_func(session, Token),
)
server.register_grant(RefreshTokenGrant)
server.register_endpoint(create_revocation_endpoint(session, Token))
server.register_endpoint(Introspection)


@app.teardown_appcontext
def _end_session(_exc: BaseException | None) -> None:
    session.remove()


@app.route("/oauth/token", methods=["POST"])
def issue_token() -> Any:
    return server.create_token_response()


@app.route("/oauth/revoke", methods=["POST"])
def revoke_token() -> Any:
    return server.create_endpoint_response("revocation")


@app.route("/oauth/introspect", methods=["POST"])
def introspect_token() -> Any:
    return server.create_endpoint_response("introspection")


def seed(grant_count: int) -> dict[str, Any]:
    """Creates the schema, one confidential client and `grant_count` token rows, in bulk."""
    Base.metadata.create_all(engine)
    with session() as db:
        user = User(username=f"bench-{secrets.token_hex(4)}")
        db.add(user)
        db.flush()
        client_id, client_secret = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
        client = Client(client_id=client_id, client_secret=client_secret, user_id=user.id)
        client.client_id_issued_at = int(time.time())
        client.set_client_metadata(
            {
                "client_name": "bench",
                "grant_types": ["authorization_code", "refresh_token"],
                "redirect_uris": ["http://127.0.0.1:9000/callback"],
                "response_types": ["code"],
                "scope": "read write",
                "token_endpoint_auth_method": "client_secret_basic",
            }
        )
        db.add(client)
        now = int(time.time())
        rows = [
            {
                "client_id": client_id,
                "user_id": user.id,
                "token_type": "Bearer",
                "access_token": secrets.token_urlsafe(32),
                "refresh_token": secrets.token_urlsafe(32),
                "scope": "read write",
                "issued_at": now,
                "expires_in": ACCESS_TTL,
            }
            for _ in range(grant_count)
        ]
        db.execute(insert(Token), rows)
        db.commit()
    return {
        "client_id": client_id,
        "client_secret": client_secret,
        "pairs": [[row["access_token"], row["refresh_token"]] for row in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Seed the Authlib peer's database.")
    parser.add_argument("command", choices=["seed"])
    parser.add_argument("--grants", type=int, required=True)
    args = parser.parse_args()
    json.dump(seed(args.grants), sys.stdout)


if __name__ == "__main__":
    main()
