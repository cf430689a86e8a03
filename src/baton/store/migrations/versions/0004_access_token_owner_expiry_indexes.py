"""access tokens indexed by owner and expiry together

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

The revocation feed asks for `max(expires_at)` of a grant's access tokens (a revoked grant) and
for a refresh token's companion that outlives `expires_at` (a rotation). With `grant_id` and
`refresh_token_id` indexed alone, PostgreSQL's planner could answer both from the `expires_at`
index instead: a backward scan over every access token until one of the grant's turned up, or a
bitmap AND with a range over all live tokens. On a table without fresh statistics that cost
5 ms of database CPU per revocation and 1.4 ms per rotation, growing with the table
(`tests/store/test_query_plans.py`). Indexing the owner and the expiry together makes each one
index condition. The new indexes replace the old ones, so a write maintains as many as before.

On PostgreSQL, CREATE INDEX blocks writes to `access_tokens` while it runs: on a large table,
upgrade in a quiet moment.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.create_index(
            "ix_access_tokens_grant_id_expires_at", ["grant_id", "expires_at"], unique=False
        )
        batch_op.create_index(
            "ix_access_tokens_refresh_token_id_expires_at",
            ["refresh_token_id", "expires_at"],
            unique=False,
        )
        batch_op.drop_index("ix_access_tokens_grant_id")
        batch_op.drop_index("ix_access_tokens_refresh_token_id")


def downgrade() -> None:
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_access_tokens_grant_id", ["grant_id"], unique=False)
        batch_op.create_index(
            "ix_access_tokens_refresh_token_id", ["refresh_token_id"], unique=False
        )
        batch_op.drop_index("ix_access_tokens_refresh_token_id_expires_at")
        batch_op.drop_index("ix_access_tokens_grant_id_expires_at")
