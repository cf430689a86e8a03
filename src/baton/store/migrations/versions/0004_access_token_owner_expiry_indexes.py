"""access tokens indexed by owner and expiry together; no unique index on jti

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
index condition. The new indexes replace the old ones.

The unique constraint on `jti` goes: the column is never looked up (it names a token in the
revocation feed), its 96 random bits already make a repeat negligible (RFC 7519 §4.1.7), and its
index cost every rotation one more insert at a random place in a B-tree. On SQLite, dropping the
constraint rebuilds `access_tokens`.

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
        batch_op.drop_constraint("uq_access_tokens_jti", type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_access_tokens_jti", ["jti"])
        batch_op.create_index("ix_access_tokens_grant_id", ["grant_id"], unique=False)
        batch_op.create_index(
            "ix_access_tokens_refresh_token_id", ["refresh_token_id"], unique=False
        )
        batch_op.drop_index("ix_access_tokens_refresh_token_id_expires_at")
        batch_op.drop_index("ix_access_tokens_grant_id_expires_at")
