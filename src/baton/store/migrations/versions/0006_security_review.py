"""server-side sessions, registered resources, per-client consent and PKCE, one fork chain

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

The schema of the fixes for the security review (issue 21):
- `sessions`: browser sessions held server-side. The cookie carries a random id and the row its
  digest, so a read of the database no longer forges a session, and ending the row ends the
  session at once. The session signing key that stood in `server_secrets` is deleted: it now
  comes from the environment or a 0600 file, never from the database.
- `clients.resource_uri` and `clients.allowed_resources` (RFC 8707): a resource server's
  identifier, and the resources a client may ask for; `grants`, `consents` and
  `authorization_codes` record the resources granted.
- `clients.remember_consent`: a public client's remembered consent is honoured only when the
  operator opted in for it; `clients.require_pkce`: PKCE for every client (OAuth 2.1). Clients
  registered before this migration keep PKCE optional (the server default of the column), so
  that an upgrade breaks no confidential client that does not send it; new ones require it.
- `refresh_tokens.continued_id`: under `fork`, the one sibling whose chain continued.

Every change adds; nothing is rewritten, so the upgrade is quick on a large database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("source_address", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"], unique=False)
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"], unique=False)
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resource_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("allowed_resources", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("remember_consent", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("require_pkce", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index(
            "ix_clients_resource_uri",
            ["resource_uri"],
            unique=True,
            sqlite_where=sa.text("resource_uri IS NOT NULL"),
            postgresql_where=sa.text("resource_uri IS NOT NULL"),
        )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resources", sa.Text(), nullable=True))
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resources", sa.Text(), nullable=True))
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resources", sa.Text(), nullable=True))
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("continued_id", Id, nullable=True))
    # The session signing key no longer lives in the database (H2 of the review).
    op.execute(sa.text("DELETE FROM server_secrets WHERE name = 'session'"))


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("continued_id")
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_column("resources")
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_column("resources")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_column("resources")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_index("ix_clients_resource_uri")
        batch_op.drop_column("require_pkce")
        batch_op.drop_column("remember_consent")
        batch_op.drop_column("allowed_resources")
        batch_op.drop_column("resource_uri")
    op.drop_index("ix_sessions_expires_at", table_name="sessions")
    op.drop_index("ix_sessions_user_id", table_name="sessions")
    op.drop_table("sessions")
