"""Clients no operator registered: dynamic registration and client ID metadata documents

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

- `clients` gains the RFC 7591 metadata of a client registered dynamically or described by a
  client ID metadata document (`registered_via`, `registration`, `registration_token_digest`,
  `document_expires_at`, `grant_types`, `token_endpoint_auth_method`, `jwks_uri`): nullable
  columns the previous release neither reads nor writes.
- A client ID metadata document's client id is its https URL, longer than the 64 characters a
  client id had: on PostgreSQL the client id columns (and the audit log's `target_id`) are
  widened to `varchar(2048)`. Widening a `varchar` rewrites nothing and takes no more than a
  brief lock (PostgreSQL's `ALTER COLUMN TYPE` is binary-coercible here); the previous release
  still writes ids that fit. SQLite never enforced the length, and is left alone.
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

# The tables whose client id column is widened on PostgreSQL, and that column.
WIDENED = (
    ("clients", "id"),
    ("consents", "client_id"),
    ("grants", "client_id"),
    ("authorization_codes", "client_id"),
    ("security_events", "client_id"),
    ("auth_challenges", "client_id"),
    ("audit_log", "target_id"),
)
CLIENT_ID_LENGTH = 2048


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("registered_via", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("registration", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("registration_token_digest", sa.LargeBinary(32)))
        batch_op.add_column(sa.Column("document_expires_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("grant_types", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("token_endpoint_auth_method", sa.String(32)))
        batch_op.add_column(sa.Column("jwks_uri", sa.Text(), nullable=True))
    if op.get_context().dialect.name == "postgresql":
        for table, column in WIDENED:
            op.alter_column(table, column, type_=sa.String(CLIENT_ID_LENGTH))
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
            "jwks_uri",
            "token_endpoint_auth_method",
            "grant_types",
            "document_expires_at",
            "registration_token_digest",
            "registration",
            "registered_via",
        ):
            batch_op.drop_column(column)
