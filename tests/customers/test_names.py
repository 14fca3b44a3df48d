"""Company names match across spellings, scripts and legal forms (customers/names.py)."""

from __future__ import annotations

import pytest

from customers.names import normalize_company_name

# (as Keepit or the PSA writes it, the matching key) — real-world shapes of names.
NAMES = [
    # Danish, Norwegian, Icelandic
    ("Møller A/S", "moller"),
    ("Søren Ærø ApS", "soren aero"),
    ("Ørsted A/S", "orsted"),
    ("Næstved Tømrer I/S", "naestved tomrer"),
    ("Smith og Søn ApS", "smith and son"),
    ("Bjørnstad & Co AS", "bjornstad"),
    ("Equinor ASA", "equinor"),
    ("Össur hf.", "ossur"),
    # Swedish, Finnish
    ("Åkerlund & Rausing AB", "akerlund and rausing"),
    ("Volvo AB (publ)", "volvo"),
    ("Öhman och Söner HB", "ohman and soner"),
    ("Nokia Oyj", "nokia"),
    # German-speaking
    ("Müller & Söhne GmbH", "muller and sohne"),
    ("Muller and Sohne", "muller and sohne"),
    ("Großmann Logistik GmbH & Co. KG", "grossmann logistik"),
    ("Zürich Treuhand AG", "zurich treuhand"),
    ("Schmidt und Partner UG", "schmidt and partner"),
    # Polish, Czech, Croatian, Hungarian
    ("Łódź Software Sp. z o.o.", "lodz software"),
    ("Dvořák Audio s.r.o.", "dvorak audio"),
    ("Đorđević d.o.o.", "dordevic"),
    ("Gábor Kft.", "gabor"),
    # French, Spanish, Portuguese, Italian
    ("Café Crème SARL", "cafe creme"),
    ("Dupont et Fils SAS", "dupont and fils"),
    ("Élan Vital S.A.", "elan vital"),
    ("Peña Hermanos S.L.", "pena hermanos"),
    ("Ferreira & Filhos Lda.", "ferreira and filhos"),
    ("São Paulo Imports Ltda", "sao paulo imports"),
    ("Rossi S.p.A.", "rossi"),
    # Turkish
    ("Şişecam A.Ş.", "sisecam"),
    ("Ödeme Hizmetleri Ltd. Şti.", "odeme hizmetleri"),
    ("İstanbul Yazılım", "istanbul yazilim"),  # noqa: RUF001 (Turkish dotless i)
    # English-speaking, punctuation, case and spacing
    ("Contoso, Inc.", "contoso"),
    ("CONTOSO INC", "contoso"),
    ("Contoso", "contoso"),
    ("Baker & McKenzie Dental LLC", "baker and mckenzie dental"),
    ("O'Brien Plumbing Pty Ltd", "o brien plumbing"),
    ("  Wide   World Importers   ", "wide world importers"),
    ("Tailspin-Toys Ltd.", "tailspin toys"),
    ("AB", "ab"),  # nothing but a legal form keeps it
    ("Fabrikam+Partners B.V.", "fabrikam and partners"),
]


@pytest.mark.parametrize(("name", "key"), NAMES, ids=[name for name, _key in NAMES])
def test_company_names_normalise_to_their_matching_key(name: str, key: str) -> None:
    assert normalize_company_name(name) == key


def test_no_letter_is_dropped_so_different_nordic_names_never_collide() -> None:
    keys = {normalize_company_name(name) for name in ("Møller A/S", "Miller A/S", "Mæller A/S")}
    assert len(keys) == 3
    assert "m ller" not in keys


def test_the_table_covers_at_least_thirty_real_world_names() -> None:
    assert len(NAMES) >= 30


@pytest.mark.django_db(transaction=True)
def test_the_migration_rewrites_the_keys_of_existing_customers() -> None:
    """Customers stored with the old key (letters dropped) get the new one; names stay."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("customers", "0001_initial")])
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO customers (name, normalized_name, created_at, updated_at) "
            "VALUES ('Møller A/S', 'm ller', now(), now()), ('Contoso', 'contoso', now(), now())"
        )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, normalized_name FROM customers ORDER BY name")
        assert cursor.fetchall() == [("Contoso", "contoso"), ("Møller A/S", "moller")]
