"""The ID token of a sealed replay in a column of its own

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

`refresh_tokens.sealed_id_token`: the ID token issued with a refresh token's successor, sealed
like the pair (`baton.core.seal`), so a retry in the leeway gets the same ID token. It used to
be appended to the pair's sealed array, which Baton 0.1.0 cannot read: a retry that reached a
0.1.0 server during a rolling upgrade failed with a 500. `sealed_response` holds the pair as
0.1.0 sealed it again.

A nullable column; nothing is rewritten, and the previous release runs against the upgraded
database. A 0.1.0 server's purge clears `sealed_response` alone: the few ID token seals it
leaves behind during a rolling upgrade (unreadable without the refresh token that was exchanged)
go with their rows when the refresh tokens are purged.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed_id_token", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("sealed_id_token")
