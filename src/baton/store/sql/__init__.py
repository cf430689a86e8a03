"""The store over SQLAlchemy 2 Core, for SQLite and PostgreSQL alike.

`SQLStore` (`facade`) is the async face the server and the CLI hold; each of its methods hands
one transaction, a function of a connection, to the dialect's runner (`baton.store.engines`).
The transactions live by subject: `lifecycle` (codes, rotations, revocations: the rules applied),
`registry` (clients, users, consent, signing keys), `sessions`, `feed` (the revocation feed's
writes and reads), `outbox` (webhook events), `purge`, and `admin` (the console's queries). Their
statements are in `statements`, their row mappers in `rows`, and the confirmation of the client a
request authenticated as in `confirm`.
"""

from baton.store.base import UserExists, UsernameOfDeletedUser
from baton.store.sql.admin import AdminStore
from baton.store.sql.facade import SQLStore
from baton.store.sql.rows import client_from_row, client_values

__all__ = [
    "AdminStore",
    "SQLStore",
    "UserExists",
    "UsernameOfDeletedUser",
    "client_from_row",
    "client_values",
]
