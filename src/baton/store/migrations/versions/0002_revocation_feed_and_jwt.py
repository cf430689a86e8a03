"""revocation feed outbox, access token jti and audience, signing keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("jti", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("audience", sa.Text(), nullable=True))
        batch_op.create_unique_constraint("uq_access_tokens_jti", ["jti"])
        batch_op.create_index(
            "ix_access_tokens_refresh_token_id", ["refresh_token_id"], unique=False
        )
    op.create_table(
        "revocation_events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("jti", sa.String(length=32), nullable=True),
        sa.Column("token_digest", sa.LargeBinary(length=32), nullable=True),
        sa.Column("effective_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_revocation_events_expires_at", "revocation_events", ["expires_at"], unique=False
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("alg", sa.String(length=16), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("private_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("activates_at", sa.BigInteger(), nullable=False),
        sa.Column("retires_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("kid"),
    )


def downgrade() -> None:
    op.drop_table("signing_keys")
    op.drop_index("ix_revocation_events_expires_at", table_name="revocation_events")
    op.drop_table("revocation_events")
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_access_tokens_refresh_token_id")
        batch_op.drop_constraint("uq_access_tokens_jti", type_="unique")
        batch_op.drop_column("audience")
        batch_op.drop_column("jti")
