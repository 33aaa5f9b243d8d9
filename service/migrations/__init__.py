"""Alembic migrations of the service's records (the advisory tables have their own chain)."""
