"""`python -m examples.login_app serve [--port 8001]` runs the app under uvicorn;
`python -m examples.login_app add-user USERNAME [--email E] [--name N]` adds a user to the list
(LOGIN_APP_USERS, default users.json), asking for the password (or reading a line of stdin)."""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from pathlib import Path

from .users import User, hash_password, load_users, save_user


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.login_app")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001)
    add = commands.add_parser("add-user", help="add (or replace) a user of the list")
    add.add_argument("username")
    add.add_argument("--email")
    add.add_argument("--name")
    args = parser.parse_args()
    if args.command == "serve":
        import uvicorn

        app = "examples.login_app.app:create_app"
        # No access log: its lines would carry each page's one-time challenge.
        uvicorn.run(app, factory=True, host=args.host, port=args.port, access_log=False)
        return
    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {args.username}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        sys.exit("a password of 12 characters or more, please")
    path = Path(os.environ.get("LOGIN_APP_USERS", "users.json"))
    known = load_users(path).get(args.username)  # a new password: the same subject
    subject = known.id if known else "u_" + secrets.token_hex(8)
    user = User(subject, hash_password(password), args.email, args.name)
    save_user(path, args.username, user)
    print(f"{args.username}: subject {user.id} in {path}")


if __name__ == "__main__":
    main()
