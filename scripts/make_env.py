"""Write a development `.env` (DEBUG on, fresh secrets) unless one exists. Used by make."""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else ".env")
    if path.exists():
        return 0
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
