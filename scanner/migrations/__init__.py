"""Alembic migrations of the one SQL schema (advisories and the service's records)."""
