"""`make demo`'s small truths: the demo's .env points at the sandbox, and the sandbox says
how to sign in to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from keepit_sandbox import SandboxConfig
from tests.conftest import ROOT, manage, subprocess_env


def make_env(path: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "scripts/make_env.py", str(path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_the_demo_env_file_gets_the_sandbox_base_url(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    make_env(env)
    first = env.read_text()
    assert "DEBUG=true" in first
    template = "KEEPIT_BASE_URL_TEMPLATE=http://127.0.0.1:9100/{region}"
    make_env(env, "--set", template)
    make_env(env, "--set", template)  # twice: still one line
    text = env.read_text()
    assert text.count("KEEPIT_BASE_URL_TEMPLATE=") == 1
    assert template in text.splitlines()
    assert text.startswith(first.rstrip("\n"))  # the secrets were kept
    make_env(env, "--set", "KEEPIT_BASE_URL_TEMPLATE=http://127.0.0.1:9200/{region}")
    assert "KEEPIT_BASE_URL_TEMPLATE=http://127.0.0.1:9200/{region}" in env.read_text()


def test_make_demo_writes_the_sandbox_base_url_into_the_env_file() -> None:
    dry = subprocess.run(
        ["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert (
        'scripts/make_env.py .env --set "KEEPIT_BASE_URL_TEMPLATE=http://127.0.0.1:9100/{region}"'
        in dry
    )


def test_the_sandbox_help_and_banner_print_its_credentials() -> None:
    defaults = SandboxConfig()
    env = subprocess_env()
    help_text = manage("keepit_sandbox", "--help", env=env).stdout
    flat = " ".join(help_text.split())
    for value in (
        defaults.username,
        defaults.password,
        defaults.token_login,
        defaults.token_password,
    ):
        assert f"default: {value})" in flat
    process = subprocess.Popen(
        [sys.executable, "manage.py", "keepit_sandbox", "--port", "0", "--accounts", "3"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(7)]
    finally:
        process.terminate()
        process.wait(timeout=20)
    text = "".join(banner)
    assert f"username / password: {defaults.username} / {defaults.password}" in text
    assert f"API token login / password: {defaults.token_login} / {defaults.token_password}" in text
    assert "Keepit URL to paste: https://us-dc.keepit.com/users/" in text


def test_the_demo_database_is_built_on_sqlite_from_nothing(tmp_path: Path) -> None:
    """`make demo` runs on SQLite (no DATABASE_URL): every migration must apply there.
    Index connector_status_rank_idx's NULLS FIRST, which SQLite refuses in an index, broke
    the demo's first `migrate` while the suite (on PostgreSQL) stayed green."""
    env = subprocess_env(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}")
    result = manage("migrate", "-v", "0", env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[ ]" not in manage("showmigrations", "--plan", env=env).stdout
