"""Persistence layer: SQLAlchemy models, service functions and Alembic migrations.

Imports nothing from api, worker or mpt, so every process can share it.
"""
