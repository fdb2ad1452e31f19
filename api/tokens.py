"""Admin command for API tokens, run where the database is reachable:

    python -m api.tokens create --name ci --scopes read,submit
    python -m api.tokens list
    python -m api.tokens revoke 3

`create` prints the token alone on stdout, once: only its sha256 is stored.
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.orm import Session

from db.base import make_engine, make_session_factory
from db.errors import ServiceError
from db.settings import Settings
from db.tokens.service import create_token, list_tokens, revoke_token


def create(session: Session, args: argparse.Namespace) -> None:
    row, token = create_token(session, name=args.name, scopes=args.scopes.split(","))
    print(token)
    print(
        f"token {row.id} {row.name!r} with scopes {','.join(row.scopes)}: store it now, it is not shown again",
        file=sys.stderr,
    )


def show(session: Session, _args: argparse.Namespace) -> None:
    for row in list_tokens(session):
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        print(f"{row.id}\t{row.name}\t{','.join(row.scopes)}\t{row.created_at:%Y-%m-%d %H:%M}\t{state}")


def revoke(session: Session, args: argparse.Namespace) -> None:
    row = revoke_token(session, token_id=args.token_id)
    print(f"token {row.id} {row.name!r} revoked")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api.tokens", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(required=True, dest="command")
    new = commands.add_parser("create", help="create a token and print it once")
    new.add_argument("--name", required=True)
    new.add_argument("--scopes", required=True, help="comma-separated: read, submit, admin")
    new.set_defaults(run=create)
    commands.add_parser("list", help="every token (never the token itself)").set_defaults(run=show)
    gone = commands.add_parser("revoke", help="refuse a token from now on")
    gone.add_argument("token_id", type=int)
    gone.set_defaults(run=revoke)
    args = parser.parse_args(argv)
    engine = make_engine(Settings().database_url)
    try:
        with make_session_factory(engine)() as session:
            args.run(session, args)
    except ServiceError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
