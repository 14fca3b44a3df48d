"""Create the first admin user, printing its generated password exactly once."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create an admin superuser with a generated password if no superuser exists yet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin", help="Username (default: admin).")
        parser.add_argument("--email", default="admin@localhost", help="E-mail of the admin user.")
        parser.add_argument(
            "--password-file",
            default="",
            help="Also write the generated password to this file (mode 600), e.g. for the demo.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin user already exists; not creating another.")
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(
            username=options["username"], email=options["email"], password=password
        )
        if options["password_file"]:
            with open(options["password_file"], "w", encoding="utf-8") as handle:
                handle.write(password + "\n")
            os.chmod(options["password_file"], 0o600)
        banner = "=" * 64
        self.stdout.write(self.style.SUCCESS(banner))
        self.stdout.write(self.style.SUCCESS("Vectis admin user created (shown only once):"))
        self.stdout.write(self.style.SUCCESS(f"  username: {options['username']}"))
        self.stdout.write(self.style.SUCCESS(f"  password: {password}"))
        self.stdout.write(self.style.SUCCESS(banner))
