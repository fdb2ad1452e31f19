"""Persistence layer: SQLAlchemy models, service functions and Alembic migrations.

Imports nothing from api, worker or mpt, so every process can share it.
"""

# Register every table whichever module is imported first: foreign keys name their target
# tables by string, and a flush fails if a referenced table was never imported.
from db import tables  # noqa: F401
