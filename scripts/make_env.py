"""Write a development `.env` (DEBUG on, fresh secrets) unless one exists. Used by make.

`make_env.py .env --set NAME=VALUE ...` also sets (adds or replaces) those variables in
the file, so `make demo` can point commands run by hand at the sandbox.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
from pathlib import Path


def write_fresh(path: Path) -> None:
    fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    path.write_text(
        "# Written by `make` for local development; see .env.example for every variable.\n"
        "DEBUG=true\n"
        f"SECRET_KEY={secrets.token_urlsafe(48)}\n"
        f"VECTIS_ENCRYPTION_KEYS={fernet_key}\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    print(f"Wrote {path} with DEBUG on and freshly generated secrets.")


def set_variables(path: Path, assignments: list[str]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        line = f"{name}={value}"
        for index, existing in enumerate(lines):
            if existing.split("=", 1)[0].strip() == name:
                lines[index] = line
                break
        else:
            lines.append(line)
        print(f"{path}: {line}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", nargs="?", default=".env")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    path = Path(args.path)
    if not path.exists():
        write_fresh(path)
    if args.set:
        set_variables(path, args.set)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
