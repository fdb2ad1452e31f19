"""Command-line client of the flipguard API: `python -m api.cli --help`.

Every REST resource has a command: data sets, model versions, update jobs, flip reports and
comparisons of any two versions. The base URL comes from --url, else FLIPGUARD_URL, else
http://127.0.0.1:8000; the API token from --token, else FLIPGUARD_TOKEN (create one with
`python -m api.tokens create`). The client imports neither torch nor the database layer.
"""
