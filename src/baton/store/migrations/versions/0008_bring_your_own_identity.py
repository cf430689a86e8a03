"""Bring your own identity: login and consent challenges, upstream providers, TOTP, scopes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

The schema of issue 25:
- `auth_challenges`: login and consent decisions handed to the product's own app.
- `upstream_providers` and `upstream_links`: "Sign in with ..." and which upstream account is
  which local user.
- `users`: disabled, deleted (the name kept, never reassigned), when the password last changed, the TOTP secret (sealed) and its last
  accepted step, and whether a second factor is required; `recovery_codes` (digests).
- `clients`: a login and consent app of the client's own, its homepage, and when it was deleted.
- `consents.expires_at` and `claims`: a consent app's `remember_for`, and the claims it gave.
- `scopes`: each scope's description on the consent page.

Every change adds a table, a nullable column or one with a default; nothing is rewritten, so
the previous release runs against the upgraded database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("login_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("consent_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("client_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("password_changed_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("totp_secret", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("mfa_required", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("deleted_at", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("claims", sa.Text(), nullable=True))
    op.create_table(
        "auth_challenges",
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("browser", sa.LargeBinary(length=32), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("user_id", Id, nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("verifier", sa.LargeBinary(length=32), nullable=True),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index(
        "ix_auth_challenges_verifier",
        "auth_challenges",
        ["verifier"],
        unique=True,
        sqlite_where=sa.text("verifier IS NOT NULL"),
        postgresql_where=sa.text("verifier IS NOT NULL"),
    )
    op.create_index("ix_auth_challenges_expires_at", "auth_challenges", ["expires_at"])
    op.create_table(
        "upstream_providers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("link_by_email", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("create_users", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("disabled_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "upstream_links",
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.ForeignKeyConstraint(["provider_id"], ["upstream_providers.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("provider_id", "subject"),
    )
    op.create_index("ix_upstream_links_user_id", "upstream_links", ["user_id"])
    op.create_table(
        "recovery_codes",
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_recovery_codes_user_id", "recovery_codes", ["user_id"])
    op.create_table(
        "scopes",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("scopes")
    op.drop_index("ix_recovery_codes_user_id", table_name="recovery_codes")
    op.drop_table("recovery_codes")
    op.drop_index("ix_upstream_links_user_id", table_name="upstream_links")
    op.drop_table("upstream_links")
    op.drop_table("upstream_providers")
    op.drop_index("ix_auth_challenges_expires_at", table_name="auth_challenges")
    op.drop_index("ix_auth_challenges_verifier", table_name="auth_challenges")
    op.drop_table("auth_challenges")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_column("claims")
        batch_op.drop_column("expires_at")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("mfa_required")
        batch_op.drop_column("totp_last_step")
        batch_op.drop_column("totp_secret")
        batch_op.drop_column("password_changed_at")
        batch_op.drop_column("disabled_at")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("client_uri")
        batch_op.drop_column("consent_url")
        batch_op.drop_column("login_url")
