"""A purge that never scans the token tables

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05

Deleting a row that a foreign key refers to makes the database look for the rows referring to
it. Two of those looks had no index to use, so the purge of dead grants read whole tables once
per row it deleted (a batch of 50 dead grants: 1.4-1.5 s at 200,000 grants and 8.6-9.2 s at
1,000,000 on PostgreSQL; on SQLite 6.3-6.8 s at 1,000,000, with the write lock held and every
token request waiting; `bench/purge_scale.py`):

- `refresh_tokens.parent_id` -> `refresh_tokens.id`: each deleted refresh token scanned
  `refresh_tokens` for its children. The key is dropped: an index on `parent_id` would cost
  every rotation one more index write, and a child is written only by the rotation that
  exchanged its parent; families are purged whole.
- `access_tokens.grant_id` -> `grants.id`: each deleted grant scanned `access_tokens`, which is
  indexed by grant only for the tokens without a companion (migration 0005). The key is
  dropped: an access token is written with its grant live, and purged before it.
- `authorization_codes.grant_id`: indexed, for the purge's own delete of a dead grant's codes
  and for the grant's key that still refers from there.

PostgreSQL drops the two constraints (no table is rewritten) and builds the index, with every
table locked meanwhile (about 1.2 s per million codes). SQLite cannot drop a constraint: it builds
the two tables anew without it (Alembic's batch mode), with the foreign keys unenforced for that
transaction and checked before it commits (`Runner.write_schema`). A key already gone is left
so. Nothing the previous release reads or writes changes, and it never relied on either key to
refuse a write.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# PostgreSQL named the keys of migration 0001 (which gave none) `<table>_<column>_fkey`; SQLite
# keeps them unnamed, and batch mode finds them by the name this convention gives them.
_SQLITE_NAMES = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}
_DROPPED = (
    ("refresh_tokens", "parent_id", "refresh_tokens"),
    ("access_tokens", "grant_id", "grants"),
)


def upgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    for table, column, _ in _DROPPED:
        name = f"{table}_{column}_fkey"
        if not sqlite:
            # IF EXISTS: an operator may have dropped it already, to work around the slow purge.
            op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")
            continue
        keys = sa.inspect(op.get_bind()).get_foreign_keys(table)
        if any(key["constrained_columns"] == [column] for key in keys):
            with op.batch_alter_table(table, naming_convention=_SQLITE_NAMES) as batch_op:
                batch_op.drop_constraint(name, type_="foreignkey")
    op.create_index("ix_authorization_codes_grant_id", "authorization_codes", ["grant_id"])


def downgrade() -> None:
    op.drop_index("ix_authorization_codes_grant_id", table_name="authorization_codes")
    for table, column, referred in _DROPPED:
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_foreign_key(f"{table}_{column}_fkey", referred, [column], ["id"])
