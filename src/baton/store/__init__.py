"""Storage: one interface (`Store`), implemented over SQLAlchemy Core for SQLite and PostgreSQL."""

from baton.store.base import Store

__all__ = ["Store"]
