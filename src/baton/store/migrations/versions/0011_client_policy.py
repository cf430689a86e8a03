"""Per-client policy, scheduled changes and integration signals

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

- `clients.policy`: the client's own policy over the server's, with any change scheduled for an
  instant (JSON, `baton.core.client_policy`); `clients.contacts` and `clients.notify_url`: whom
  to tell about a change, and where signed notices are POSTed.
- `refresh_tokens.access_expires_at`: the `exp` of the companion access token, so a refresh that
  comes after it is counted (a late refresh); `refresh_tokens.forked_at`: when a retry of the
  token first got a sibling pair (`fork`), so its children stay one family (rule 3b) after the
  client's policy moves away from `fork`.
- `client_signals`: what each client's integration does that a stricter policy would break
  (`baton.core.signals`), counted in batches and merged per hour into the row of their client,
  kind, reason, source, grant (`would_refuse` only; '' otherwise) and hour.

Nullable columns and a new table only: the previous release neither reads nor writes them, and
runs against the upgraded database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policy", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("contacts", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("notify_url", sa.Text(), nullable=True))
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("access_expires_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("forked_at", sa.BigInteger(), nullable=True))
    op.create_table(
        "client_signals",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False, server_default=""),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("grant_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("first_at", sa.BigInteger(), nullable=False),
        sa.Column("last_at", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("delays", sa.Text(), nullable=True),
    )
    op.create_index(
        "ux_client_signals_key",
        "client_signals",
        ["client_id", "kind", "reason", "source", "grant_id", "bucket"],
        unique=True,
    )
    op.create_index(
        "ix_client_signals_client_id_last_at", "client_signals", ["client_id", "last_at"]
    )
    op.create_index("ix_client_signals_last_at", "client_signals", ["last_at"])


def downgrade() -> None:
    op.drop_index("ix_client_signals_last_at", table_name="client_signals")
    op.drop_index("ix_client_signals_client_id_last_at", table_name="client_signals")
    op.drop_index("ux_client_signals_key", table_name="client_signals")
    op.drop_table("client_signals")
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("forked_at")
        batch_op.drop_column("access_expires_at")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        for column in ("notify_url", "contacts", "policy"):
            batch_op.drop_column(column)
