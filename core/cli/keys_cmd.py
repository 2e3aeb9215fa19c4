"""``stackward keys new PATH``: an OpenSSH ed25519 key pair, PATH (0600) and PATH.pub."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("keys", help="make and show keys")
    keys_sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    new = keys_sub.add_parser("new", help="write an ed25519 key pair PATH and PATH.pub")
    new.add_argument("path", metavar="PATH", type=Path)
    new.add_argument("--comment", default=None, help="comment on the public line")
    new.add_argument("--force", action="store_true", help="overwrite an existing key")
    new.set_defaults(handler=new_key)
    show = keys_sub.add_parser("show", help="print the public line and fingerprint of a key")
    show.add_argument("path", metavar="PATH", type=Path)
    show.set_defaults(handler=show_key)


def new_key(args: argparse.Namespace) -> int:
    from core.keyfiles import write_new_file
    from protocol.keys import PrivateKey

    path: Path = args.path
    pub_path = path.with_name(path.name + ".pub")
    if not args.force and (path.exists() or pub_path.exists()):
        print(f"stackward: {path} exists; use --force to overwrite", file=sys.stderr)
        return 1
    comment = args.comment if args.comment is not None else f"stackward@{socket.gethostname()}"
    key = PrivateKey.generate(comment)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_new_file(path, key.openssh_pem(), 0o600)
        write_new_file(pub_path, (key.public_key.openssh_line() + "\n").encode(), 0o644)
    except OSError as exc:
        print(f"stackward: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    print(key.public_key.openssh_line())
    return 0


def show_key(args: argparse.Namespace) -> int:
    from protocol.exceptions import BadKey
    from protocol.keys import parse_private_key, parse_public_key

    path: Path = args.path
    try:
        data = path.read_bytes()
        if data.lstrip().startswith(b"ssh-"):
            public = parse_public_key(data.decode())
        else:
            public = parse_private_key(data).public_key
    except OSError as exc:
        print(f"stackward: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    except BadKey as exc:
        print(f"stackward: {path}: {exc}", file=sys.stderr)
        return 1
    print(public.openssh_line())
    print(public.fingerprint())
    return 0
