"""Settings for the test suite: the real settings, pointed at PostgreSQL and Redis.

`make test` and `.ci/run` may override `DATABASE_URL` / `CELERY_BROKER_URL`; these are
only the defaults that match the development and CI machines.
"""

from __future__ import annotations

import os

os.environ.setdefault("VECTIS_ENV_FILE", "")  # never read a developer's .env in tests
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/vectis")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "test-secret-key")
# Two fixed keys so tests can exercise rotation; the first encrypts.
os.environ.setdefault(
    "VECTIS_ENCRYPTION_KEYS",
    "dGVzdC1rZXktb25lLXRlc3Qta2V5LW9uZS10ZXN0LWs=,dGVzdC1rZXktdHdvLXRlc3Qta2V5LXR3by10ZXN0LWs=",
)
os.environ.setdefault("KEEPIT_BASE_URL_TEMPLATE", "http://127.0.0.1:9/{region}")
# The test client and the browser tests speak plain HTTP to a local server.
for _name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
    os.environ.setdefault(_name, "false")
os.environ.setdefault("SECURE_HSTS_SECONDS", "0")
# Most tests sign in with `force_login` and look at pages; the second-factor requirement
# (on by default in production) is tested on its own, switched on (tests/access/).
os.environ.setdefault("VECTIS_REQUIRE_MFA", "false")

from .settings import *  # noqa: E402, F403

# The sandbox's commands (keepit_sandbox, keepit_demo_setup) are tested too.
if "keepit_sandbox" not in INSTALLED_APPS:  # noqa: F405
    INSTALLED_APPS.append("keepit_sandbox")  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
