"""Entry point: `python -m tests.oidc_provider.serve --config CONFIG.json`.

Binds the port before Django is set up because the issuer, which the settings need,
contains it. Prints `ready <base URL>` once it accepts requests, then serves until killed.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from tests.oidc_provider.config import CONFIG_ENV, ISSUER_ENV, ProviderConfig, load_config

HOST = "127.0.0.1"


def provision(config: ProviderConfig) -> None:
    """Creates the users and the one client application (consent skipped, RS256)."""
    from django.contrib.auth.models import User
    from oauth2_provider.models import Application

    for profile in config.users.values():
        User.objects.create_user(
            username=profile.username, email=profile.email, password=profile.password
        )
    application = Application(
        name="vectis",
        client_id=config.client.client_id,
        client_secret=config.client.client_secret,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=" ".join(config.client.redirect_uris),
        skip_authorization=True,
        algorithm=Application.RS256_ALGORITHM,
    )
    application.full_clean()
    application.save()


def exit_when_stdin_closes() -> None:
    """The parent keeps our stdin open; if it dies without stopping us, so do we."""
    sys.stdin.buffer.read()
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument(
        "--exit-with-stdin", action="store_true", help="exit when stdin reaches end of file"
    )
    args = parser.parse_args(argv)

    os.environ[CONFIG_ENV] = str(args.config.resolve())
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"
    config = load_config()

    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    server = ThreadedWSGIServer((HOST, config.port), WSGIRequestHandler)
    base = f"http://{HOST}:{server.server_address[1]}"
    os.environ[ISSUER_ENV] = f"{base}/o"

    import django
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    provision(config)
    server.set_app(get_wsgi_application())

    if args.exit_with_stdin:
        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print(f"ready {base}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
