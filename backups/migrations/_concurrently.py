"""Building and dropping an index CONCURRENTLY on PostgreSQL from a migration (which then
says `atomic = False`), as migrations 0007 and 0009 do: the table's writers (the sync)
never wait for the build. A build retried after a crash finds the index built (and
skips it) or left INVALID half-way (drops and builds it again); an index of that name in
another schema, even on the search path, is not this one. Elsewhere (SQLite, the demo)
a plain index.

(The migration loader skips modules whose name starts with "_": this one is not a
migration.) Applied migrations run it: change it only in ways that keep what they did."""

from __future__ import annotations

from typing import Any

from django.db import models


def create_index(schema_editor: Any, model: type[models.Model], index: models.Index) -> None:
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.add_index(model, index)
        return
    with schema_editor.connection.cursor() as cursor:
        # The index of that name on the model's own table (in its schema).
        cursor.execute(
            "SELECT i.indisvalid, n.nspname FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE i.indrelid = to_regclass(%s) AND c.relname = %s",
            [schema_editor.quote_name(model._meta.db_table), index.name],
        )
        found = cursor.fetchone()
    if found is not None and found[0]:
        return  # already built
    if found is not None:
        # A build that failed half-way leaves an INVALID index of that name behind.
        quote = schema_editor.quote_name
        schema_editor.execute(f"DROP INDEX CONCURRENTLY {quote(found[1])}.{quote(index.name)}")
    schema_editor.add_index(model, index, concurrently=True)


def drop_index(schema_editor: Any, model: type[models.Model], index: models.Index) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(model, index, concurrently=True)
    else:
        schema_editor.remove_index(model, index)
