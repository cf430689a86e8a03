"""OpenID Connect: client metadata, user claims, sign-in facts, sessions' sid, logout outbox

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

The schema of the OpenID Connect provider (issue 24):
- `clients`: the ID token's algorithm, subject type and sector, post-logout redirect URIs, the
  back-channel logout URI, whether a `nonce` is required, and the browser origins allowed to
  call the token endpoints (CORS; NULL: the redirect URIs' origins).
- `users`: the standard claims of the `email` and `profile` scopes.
- `grants` and `authorization_codes`: the session (`sid`) and sign-in the grant came from; the
  code also keeps the request's `nonce`.
- `sessions`: a public `sid`, and how the user signed in (`acr`, `amr`).
- `signing_keys.purpose`: a key made only for an ID token algorithm never signs access tokens.
- `webhook_outbox.destination`: back-channel logout tokens go through the webhook outbox.

Every change adds a nullable column or one with a default; nothing is rewritten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("id_token_signed_response_alg", sa.String(16), nullable=True))
        batch_op.add_column(
            sa.Column("subject_type", sa.String(16), nullable=False, server_default="public")
        )
        batch_op.add_column(sa.Column("sector_identifier_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("post_logout_redirect_uris", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("backchannel_logout_uri", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "backchannel_logout_session_required",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
            )
        )
        batch_op.add_column(
            sa.Column("require_nonce", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("allowed_origins", sa.Text(), nullable=True))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(320), nullable=True))
        batch_op.add_column(
            sa.Column("email_verified", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("profile", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.BigInteger(), nullable=True))
    for table in ("grants", "authorization_codes"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            if table == "authorization_codes":
                batch_op.add_column(sa.Column("nonce", sa.Text(), nullable=True))
            batch_op.add_column(sa.Column("sid", sa.String(64), nullable=True))
            batch_op.add_column(sa.Column("sign_in", sa.Text(), nullable=True))
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sid", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("acr", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("amr", sa.Text(), nullable=True))
        batch_op.create_index("ix_sessions_sid", ["sid"], unique=False)
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purpose", sa.String(16), nullable=True))
    with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("destination", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
        batch_op.drop_column("destination")
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_column("purpose")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_sid")
        for column in ("amr", "acr", "sid"):
            batch_op.drop_column(column)
    for table in ("authorization_codes", "grants"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("sign_in")
            batch_op.drop_column("sid")
            if table == "authorization_codes":
                batch_op.drop_column("nonce")
    with op.batch_alter_table("users", schema=None) as batch_op:
        for column in ("updated_at", "profile", "email_verified", "email"):
            batch_op.drop_column(column)
    with op.batch_alter_table("clients", schema=None) as batch_op:
        for column in (
            "allowed_origins",
            "require_nonce",
            "backchannel_logout_session_required",
            "backchannel_logout_uri",
            "post_logout_redirect_uris",
            "sector_identifier_uri",
            "subject_type",
            "id_token_signed_response_alg",
        ):
            batch_op.drop_column(column)
