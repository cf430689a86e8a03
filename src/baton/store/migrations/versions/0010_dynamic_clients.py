"""Clients no operator registered: dynamic registration and client ID metadata documents

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

- `clients` gains the RFC 7591 metadata of a client registered dynamically or described by a
  client ID metadata document (`registered_via`, `registration`, `registration_token_digest`,
  `document_expires_at`, `grant_types`, `token_endpoint_auth_method`, `jwks_uri`): nullable
  columns the previous release neither reads nor writes. `used_at`: when a dynamically
  registered client was first used (a code issued for it, or a signed-in person asked to
  consent to it); the expiry of unused registrations deletes only clients without it.
- The client id columns stay `varchar(64)`: widening them for long metadata-document URLs
  changes their type, which invalidates the cached statement plans of the release still running
  during a rolling upgrade (tests/e2e/test_rolling_upgrade.py saw its refreshes fail with 500s).
  A later release widens them, once the one running beside it retries such a unit of work.
- `client_assertions`: the `jti` of each `private_key_jwt` assertion accepted, until its `exp`
  (RFC 7523 §3), so none is accepted twice.

Nothing is rewritten, and the previous release runs against the upgraded database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("registered_via", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("registration", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("registration_token_digest", sa.LargeBinary(32)))
        batch_op.add_column(sa.Column("document_expires_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("grant_types", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("token_endpoint_auth_method", sa.String(32)))
        batch_op.add_column(sa.Column("jwks_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("used_at", sa.BigInteger(), nullable=True))
    op.create_table(
        "client_assertions",
        sa.Column("digest", sa.LargeBinary(32), primary_key=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_client_assertions_expires_at", "client_assertions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_client_assertions_expires_at", table_name="client_assertions")
    op.drop_table("client_assertions")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        for column in (
            "used_at",
            "jwks_uri",
            "token_endpoint_auth_method",
            "grant_types",
            "document_expires_at",
            "registration_token_digest",
            "registration",
            "registered_via",
        ):
            batch_op.drop_column(column)
