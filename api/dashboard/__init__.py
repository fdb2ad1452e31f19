"""The internal MLOps dashboard: server-rendered pages under /dashboard."""
