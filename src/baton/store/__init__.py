"""Storage, over SQLAlchemy Core for SQLite and PostgreSQL: `baton.store.sql.SQLStore`.

Its values and errors are in `baton.store.base`; what each caller asks of it is a small protocol
declared next to that caller (see `baton.store.base`).
"""
