"""The API container's health check: `python -m api.healthcheck [URL]`.

Exits 0 when the API process answers /health with a working database. /health itself also
answers 503 while no worker serves the training queue (the service cannot train), which is not
a reason to restart the API container.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    url = argv[0] if argv else "http://127.0.0.1:8000/health"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        body = json.load(error)
    except (OSError, ValueError) as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    if body.get("database") != "ok":
        print(f"unhealthy: database {body.get('database')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
