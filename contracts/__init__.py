"""Names and typed shapes that cross the torch boundary, owned once.

Imported by every layer (`mpt`, `db`, `api`, `worker`); imports nothing of theirs and nothing
outside the standard library, so the API can use it without torch.
"""
