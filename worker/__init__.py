"""Celery workers: thin adapters from job rows in the database to the engine (mpt)."""
