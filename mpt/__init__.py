"""The flipguard engine: Margin Preserving Training and flip metrics, pure PyTorch.

Nothing in this package imports the service (api, worker, db); it is usable as a library and
through the `mpt` command line.
"""
