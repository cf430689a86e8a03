"""a grant's access tokens found through their companion refresh tokens

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Every rotation inserted its access token into an index by grant, at the place of that grant's
entries: one more B-tree page written (and read back) per rotation, on top of the digest
indexes a lookup needs. `bench/rotation_io.py` (8,000 rotations on 100,000 seeded grants): 15.65
to 15.80 write calls per rotation before, 13.04 after.

Nothing needs it: an access token issued with a refresh token is found through its companion
(`refresh_token_id`, already indexed with `expires_at` for the companion's death), and the
companion's grant through `refresh_tokens.grant_id`. That index now also holds `expires_at`:
an access token never outlives its companion (`Policy.pair_expiries`), so the revocation feed's
"when does this grant's last access token expire" walks the grant's refresh tokens newest
expiry first and stops after one or two (`baton.store.sql.lifecycle._last_access_expiry`). The
access tokens without a companion (client_credentials) keep an index by grant of their own,
partial, written only when one is issued; the companion's index leaves them out in turn, so that
neither serves a lookup meant for the other.

On PostgreSQL, CREATE INDEX blocks writes to the tables while it runs: on a large database,
upgrade in a quiet moment.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_refresh_tokens_grant_id_expires_at",
        "refresh_tokens",
        ["grant_id", "expires_at"],
        unique=False,
    )
    op.drop_index("ix_refresh_tokens_grant_id", table_name="refresh_tokens")
    op.create_index(
        "ix_access_tokens_unpaired_grant_id_expires_at",
        "access_tokens",
        ["grant_id", "expires_at"],
        unique=False,
        sqlite_where=sa.text("refresh_token_id IS NULL"),
        postgresql_where=sa.text("refresh_token_id IS NULL"),
    )
    op.drop_index("ix_access_tokens_grant_id_expires_at", table_name="access_tokens")
    # The companion's index leaves out the rows without one, so that "refresh_token_id IS NULL"
    # is served by the index above and not by a scan of all of them in this one.
    op.drop_index("ix_access_tokens_refresh_token_id_expires_at", table_name="access_tokens")
    op.create_index(
        "ix_access_tokens_refresh_token_id_expires_at",
        "access_tokens",
        ["refresh_token_id", "expires_at"],
        unique=False,
        sqlite_where=sa.text("refresh_token_id IS NOT NULL"),
        postgresql_where=sa.text("refresh_token_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_access_tokens_refresh_token_id_expires_at", table_name="access_tokens")
    op.create_index(
        "ix_access_tokens_refresh_token_id_expires_at",
        "access_tokens",
        ["refresh_token_id", "expires_at"],
        unique=False,
    )
    op.create_index(
        "ix_access_tokens_grant_id_expires_at",
        "access_tokens",
        ["grant_id", "expires_at"],
        unique=False,
    )
    op.drop_index("ix_access_tokens_unpaired_grant_id_expires_at", table_name="access_tokens")
    op.create_index("ix_refresh_tokens_grant_id", "refresh_tokens", ["grant_id"], unique=False)
    op.drop_index("ix_refresh_tokens_grant_id_expires_at", table_name="refresh_tokens")
