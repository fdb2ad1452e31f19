"""HTTP surface of flipguard: FastAPI app, routers, schemas, the task-queue client and the CLI.

Imports db only; never torch, mpt or worker (the API image ships without them).
"""
