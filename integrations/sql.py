"""The one helper for the SQL that must stay raw: bulk inserts that skip what exists and
claims that must say which rows they changed (`RETURNING`).

Statements are built from the model's metadata, never from hand-written column lists:
every concrete column is written, and a value a caller does not give is the field's
default (a Python default, a constant `db_default`, NULL for a nullable field, now for
`auto_now` fields). A new model field with a default therefore never breaks an insert,
and one without a default — or a key that is not a field — fails loudly here instead of
in the database. Values (and datetime parameters of a WHERE clause) are prepared per
field type once per column: fast paths for the plain types, the model layer's preparation
otherwise, which keeps a 1,000-row batch cheap. Inserts are cut into statements that
stay under the databases' parameter limits. Only identifiers from the metadata and
placeholders are formatted into the SQL; every value is a parameter.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from django.db import connection as db
from django.db import models, transaction
from django.db.models.expressions import RawSQL, Value
from django.db.models.fields import NOT_PROVIDED
from django.utils import timezone

# SQLite allows 32,766 parameters per statement (PostgreSQL 65,535): stay well below.
MAX_PARAMETERS = 30_000
# From this many rows on, PostgreSQL gets them by COPY into a staging table and one
# `INSERT … SELECT` (about twice as fast as multi-row INSERTs, a tenth of the client CPU).
COPY_MIN_ROWS = 2_000
# Rows per statement of Django's bulk_update where update_rows falls back to it.
BULK_BATCH = 1_000

_PLAIN_TYPES = (
    models.CharField,
    models.TextField,
    models.BooleanField,
    models.IntegerField,
    models.BigIntegerField,
    models.PositiveIntegerField,
    models.ForeignKey,
    models.OneToOneField,
)


class MissingValue(ValueError):
    """A row lacks a value for a field that has no default, or names no field."""


def _converter(field: models.Field[Any, Any]) -> Callable[[Any], Any]:
    """Python value -> database parameter for one column."""
    if isinstance(field, models.DateTimeField):
        return db.ops.adapt_datetimefield_value
    if isinstance(field, models.JSONField):
        return lambda value: None if value is None else json.dumps(value)
    if isinstance(field, _PLAIN_TYPES):
        return lambda value: value
    return lambda value: field.get_db_prep_save(value, db)


def _filler(field: models.Field[Any, Any]) -> Callable[[], Any]:
    """The value of a column a row does not give."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return timezone.now
    if field.has_default():
        return field.get_default
    default = getattr(field, "db_default", NOT_PROVIDED)
    if isinstance(default, Value):
        return lambda: default.value
    if field.null:
        return lambda: None

    def missing() -> Any:
        raise MissingValue(f"No value for {field.model.__name__}.{field.name} (no default)")

    return missing


def _fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    """The columns an INSERT writes: this model's own, without the automatic primary key
    and generated columns."""
    return [
        field
        for field in model._meta.local_concrete_fields
        if not (field.primary_key and isinstance(field, models.AutoField))
        and not isinstance(field, models.GeneratedField)
    ]


def column(model: type[models.Model], name: str) -> str:
    """The quoted database column of a model field (for WHERE clauses of claims)."""
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    return db.ops.quote_name(field.column)


def table(model: type[models.Model]) -> str:
    return db.ops.quote_name(model._meta.db_table)


def placeholders(values: Sequence[Any]) -> str:
    """ "%s, %s, …" for an IN list."""
    return ", ".join(["%s"] * len(values))


def id_array(ids: Collection[int]) -> RawSQL | list[int]:
    """For `<field>__in=id_array(ids)`: on PostgreSQL, thousands of ids as one array
    parameter, not one placeholder each (Django builds a long IN list value by value: 0.2 s
    for 30,000); elsewhere (SQLite, the demo) the plain list."""
    if db.vendor != "postgresql":
        return list(ids)
    return RawSQL("SELECT unnest(%s::bigint[])", (list(ids),))


def text_array(values: Collection[str]) -> RawSQL | list[str]:
    """`id_array` for text keys (a vendor's ids): `<field>__in=text_array(keys)`."""
    if db.vendor != "postgresql":
        return list(values)
    return RawSQL("SELECT unnest(%s::text[])", (list(values),))


def in_ids(column_sql: str, ids: Collection[int] | Collection[str]) -> tuple[str, list[Any]]:
    """A WHERE clause (and its parameters) for `<column> IN <ids>` (ids or text keys):
    `= ANY(%s)` with one array parameter on PostgreSQL, placeholders elsewhere."""
    if db.vendor != "postgresql":
        return f"{column_sql} IN ({placeholders(list(ids))})", list(ids)
    return f"{column_sql} = ANY(%s)", [list(ids)]


def _parameter(value: Any) -> Any:
    """A WHERE-clause parameter as the database compares it (aware datetimes as stored)."""
    if isinstance(value, datetime):
        return db.ops.adapt_datetimefield_value(value)
    return value


def _fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []


def insert_rows(
    model: type[models.Model],
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: str | None,
    returning: str = "id",
) -> list[Any]:
    """`INSERT … [ON CONFLICT <conflict> DO NOTHING] RETURNING <field>`: returns the
    `returning` values of the rows this call inserted (a row that conflicts with one
    already stored, or with a concurrent insert, is skipped). Rows are keyed by field
    attname (`connection_id`, `occurred_at`, …).

    Few rows go as multi-row `VALUES` statements, as few as the parameter limit allows;
    from `COPY_MIN_ROWS` rows on, PostgreSQL gets them by COPY into a staging table and one
    `INSERT … SELECT` (`copy_rows`) — the same rows, skips and answer either way.

    `conflict` is the conflict target, e.g. "(connection_id, dedup_key)" or
    "(key) WHERE resolved_at IS NULL" (a partial unique index); None for no ON CONFLICT."""
    if not rows:
        return []
    if len(rows) >= COPY_MIN_ROWS and db.vendor == "postgresql":
        return copy_rows(model, rows, conflict=conflict, returning=returning)
    fields = _fields(model)
    plan = _Plan(model, fields)
    columns = ", ".join(db.ops.quote_name(field.column) for field in fields)
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    tail = f"ON CONFLICT {conflict} DO NOTHING " if conflict else ""
    per_statement = max(1, MAX_PARAMETERS // len(fields))
    inserted: list[Any] = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        params: list[Any] = []
        converters = [convert for _attname, convert in plan.columns]
        for row in chunk:
            values = _values(row, plan)
            params += [convert(value) for convert, value in zip(converters, values, strict=True)]
        sql = (
            f"INSERT INTO {table(model)} ({columns}) VALUES {', '.join([one] * len(chunk))} "
            f"{tail}RETURNING {column(model, returning)}"
        )
        inserted += [row[0] for row in _fetch(sql, params)]
    return inserted


def update_rows(
    model: type[models.Model], objects: Sequence[models.Model], fields: Sequence[str]
) -> int:
    """What `bulk_update(objects, fields)` writes — these fields of these instances, by
    primary key — as `UPDATE … SET … FROM (VALUES …) WHERE id = …`, as few statements as
    the parameter limit allows. Django's bulk_update builds a CASE WHEN per field and row
    in Python: at 2,000 accounts that was 2 s of client CPU in a 33 s incremental sync.
    Elsewhere than PostgreSQL (SQLite, the demo): bulk_update. Returns rows updated."""
    if not objects:
        return 0
    if db.vendor != "postgresql":
        _refuse_unsaved(objects)
        return model._default_manager.bulk_update(objects, fields, batch_size=BULK_BATCH)
    return _update_from_values(model, objects, fields)[0]


def update_claimed(
    model: type[models.Model],
    objects: Sequence[models.Model],
    fields: Sequence[str],
    *,
    claim: str,
    was: Sequence[Any],
    still_null: Sequence[str] = (),
) -> set[Any]:
    """`update_rows` as a claim: each row is written only while its `claim` field still
    holds the value it was read with (`was`, one per object) and its `still_null` fields
    are still NULL (an alert not resolved meanwhile); returns the primary keys written.
    A row another writer changed meanwhile keeps what it has. One statement per 30,000
    values on PostgreSQL; elsewhere one conditional UPDATE per row."""
    if not objects:
        return set()
    if len(was) != len(objects):
        raise ValueError("update_claimed() needs one claimed value per row.")
    if db.vendor != "postgresql":
        _refuse_unsaved(objects)
        manager = model._default_manager
        return {
            instance.pk
            for instance, old in zip(objects, was, strict=True)
            if manager.filter(
                pk=instance.pk, **{claim: old}, **{f"{name}__isnull": True for name in still_null}
            ).update(**{name: getattr(instance, name) for name in fields})
        }
    return set(
        _update_from_values(model, objects, fields, claim=(claim, was), still_null=still_null)[1]
    )


def _refuse_unsaved(objects: Sequence[models.Model]) -> None:
    if any(instance.pk is None for instance in objects):
        raise ValueError("Only saved rows can be updated: one has no primary key.")


def _update_from_values(
    model: type[models.Model],
    objects: Sequence[models.Model],
    fields: Sequence[str],
    *,
    claim: tuple[str, Sequence[Any]] | None = None,
    still_null: Sequence[str] = (),
) -> tuple[int, list[Any]]:
    """The `UPDATE … FROM (VALUES …)` statements of `update_rows` and `update_claimed`
    (PostgreSQL), all or nothing: the rows written and, for a claim (`RETURNING`), their
    primary keys. A plain update only counts them (`rowcount`): returning every id of the
    sync's updates only to count them was work for nothing."""
    _refuse_unsaved(objects)
    pk = model._meta.pk
    assert pk is not None
    chosen: list[models.Field[Any, Any]] = []
    for name in fields:
        field = model._meta.get_field(name)
        assert isinstance(field, models.Field)
        assert field.concrete
        chosen.append(field)
    claimed = model._meta.get_field(claim[0]) if claim else None
    assert claimed is None or isinstance(claimed, models.Field)
    converters = [_converter(field) for field in chosen]
    quote = db.ops.quote_name
    # Text for CharFields: a cast to varchar(n) would cut a long value silently, where the
    # column refuses it (as every other write does).
    typed = [pk, *chosen, *([claimed] if claimed is not None else [])]
    casts = ["text" if isinstance(f, models.CharField) else _column_type(f) for f in typed]
    one = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    names = [quote(f.column) for f in [pk, *chosen]] + (["vectis_was"] if claim else [])
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in chosen)
    match = f"t.{quote(pk.column)} = v.{quote(pk.column)}"
    if claimed is not None:
        match += f" AND t.{quote(claimed.column)} = v.vectis_was"
    match += "".join(f" AND t.{column(model, name)} IS NULL" for name in still_null)
    per_statement = max(1, MAX_PARAMETERS // len(typed))
    olds = claim[1] if claim else []
    returning = f" RETURNING t.{quote(pk.column)}" if claim else ""
    count, written = 0, []
    with transaction.atomic(savepoint=False), db.cursor() as cursor:  # all or nothing
        for start in range(0, len(objects), per_statement):
            chunk = objects[start : start + per_statement]
            params: list[Any] = []
            for index, instance in enumerate(chunk, start):
                params.append(instance.pk)
                params += [
                    convert(getattr(instance, field.attname))
                    for convert, field in zip(converters, chosen, strict=True)
                ]
                if claim:
                    params.append(olds[index])
            cursor.execute(
                f"UPDATE {table(model)} AS t SET {assignments} "
                f"FROM (VALUES {', '.join([one] * len(chunk))}) AS v({', '.join(names)}) "
                f"WHERE {match}{returning}",
                params,
            )
            count += cursor.rowcount
            if claim:
                written += [row[0] for row in cursor.fetchall()]
    return count, written


class _Plan:
    """How each column of an INSERT gets its value from a row."""

    def __init__(self, model: type[models.Model], fields: list[models.Field[Any, Any]]) -> None:
        self.model = model
        self.attnames = {field.attname for field in fields}
        self.columns = [(field.attname, _converter(field)) for field in fields]
        self.fillers = [_filler(field) for field in fields]


def _values(row: Mapping[str, Any], plan: _Plan) -> list[Any]:
    """The row's value for every column (a field's default where the row gives none)."""
    if len(row) == len(plan.columns):
        try:  # the common case: every column given, nothing else
            return [row[attname] for attname, _convert in plan.columns]
        except KeyError:
            pass
    if not row.keys() <= plan.attnames:
        unknown = set(row) - plan.attnames
        raise MissingValue(f"{plan.model.__name__} has no field {', '.join(sorted(unknown))}")
    return [
        row[attname] if attname in row else fill()
        for (attname, _convert), fill in zip(plan.columns, plan.fillers, strict=True)
    ]


# --- COPY --------------------------------------------------------------------------------


def _column_type(field: models.Field[Any, Any]) -> str:
    """The column's type without constraints (a foreign key's is its target key's)."""
    return str(field.db_type(db))


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_escape(value: str) -> str:
    """Text in COPY's text format; most values need no escape, and checking is ten times
    cheaper than translating."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _copy_text(value: Any) -> str:
    """One value in COPY's text format (tab-separated, `\\N` for NULL, backslash escapes)."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, str):
        return _copy_escape(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return _copy_escape(json.dumps(value))
    if isinstance(value, date):
        return value.isoformat()
    return _copy_escape(str(value))


def _copy_writer(field: models.Field[Any, Any]) -> Callable[[Any], str]:
    """The COPY text of one column's values, chosen once per column (a batch has
    thousands of rows: deciding by type per value was most of the client's time)."""
    if isinstance(field, models.CharField | models.TextField):
        return lambda value: "\\N" if value is None else _copy_escape(value)
    if isinstance(field, models.BooleanField):
        return lambda value: "\\N" if value is None else ("t" if value else "f")
    if isinstance(field, models.DateTimeField):
        return lambda value: "\\N" if value is None else value.isoformat()
    if isinstance(field, models.ForeignKey | models.IntegerField | models.BigIntegerField):
        return lambda value: "\\N" if value is None else str(int(value))
    return _copy_text


def fill_foreign_key(
    model: type[models.Model],
    foreign_key: str,
    *,
    by: str,
    target_key: str,
    scope: str,
    scope_value: Any,
    keys: Collection[str] | None = None,
) -> int:
    """Rows of `model` (within `scope` = `scope_value`) whose `foreign_key` is still NULL
    get the target row whose `target_key` (within the same scope) equals their `by`
    column: one `UPDATE … FROM` join. `keys`: only rows whose `by` is one of them.
    Returns how many rows changed."""
    field = model._meta.get_field(foreign_key)
    assert isinstance(field, models.ForeignKey)
    target = field.related_model
    assert isinstance(target, type)
    mine = table(model)
    only, only_params = ("", []) if keys is None else in_ids(f"{mine}.{column(model, by)}", keys)
    sql = (
        f"UPDATE {mine} SET {column(model, foreign_key)} = t.{column(target, 'id')} "
        f"FROM {table(target)} t "
        f"WHERE {mine}.{column(model, scope)} = %s "
        f"AND {mine}.{column(model, foreign_key)} IS NULL "
        f"AND {mine}.{column(model, by)} <> '' "
        f"AND t.{column(target, scope)} = %s "
        f"AND t.{column(target, target_key)} = {mine}.{column(model, by)}"
        f"{' AND ' + only if only else ''}"
    )
    with db.cursor() as cursor:
        cursor.execute(sql, [scope_value, scope_value, *only_params])
        return int(cursor.rowcount)


def set_foreign_key(
    model: type[models.Model],
    foreign_key: str,
    *,
    by: str,
    target_key: str,
    values: Mapping[str, int],
    scope: str,
    scope_value: Any,
) -> int:
    """Rows of `model` (within `scope` = `scope_value`) whose `foreign_key` is still NULL
    and whose `by` column is a key of `values` get that key's id (`values`: target rows'
    `target_key` → id, read from the target table). On PostgreSQL one
    `UPDATE … FROM unnest(keys, ids)`: the pairs are given, so no join with the target
    table is planned on its statistics (stale right after a bulk load); the rows still
    missing their key are read by key or all at once, whichever the planner finds
    cheaper. Elsewhere (SQLite, the demo) `fill_foreign_key` on those keys, which finds
    the same ids by joining their table. Returns how many rows changed."""
    if not values:
        return 0
    if db.vendor != "postgresql":
        return fill_foreign_key(
            model,
            foreign_key,
            by=by,
            target_key=target_key,
            scope=scope,
            scope_value=scope_value,
            keys=list(values),
        )
    mine = table(model)
    sql = (
        f"UPDATE {mine} SET {column(model, foreign_key)} = v.id "
        "FROM unnest(%s::text[], %s::bigint[]) AS v(key, id) "
        f"WHERE {mine}.{column(model, scope)} = %s "
        f"AND {mine}.{column(model, foreign_key)} IS NULL "
        f"AND {mine}.{column(model, by)} <> '' "  # as fill_foreign_key: its partial index
        f"AND {mine}.{column(model, by)} = v.key"
    )
    keys = list(values)
    with db.cursor() as cursor:
        cursor.execute(sql, [keys, [values[key] for key in keys], scope_value])
        return int(cursor.rowcount)


def refresh_statistics(*models_: type[models.Model]) -> None:
    """`ANALYZE` these tables (PostgreSQL; sampled, so a fraction of a second even for
    millions of rows) — after a bulk load, before a query whose plan depends on their
    size. Nothing on other databases."""
    if db.vendor != "postgresql":
        return
    with db.cursor() as cursor:
        for model in models_:
            cursor.execute(f"ANALYZE {table(model)}")


def relax_commit() -> None:
    """Inside a transaction: let its commit return before the write-ahead log reaches the
    disk (PostgreSQL's `synchronous_commit = off`, for this transaction only). For bulk
    ingest whose progress marker (a cursor) is committed in the same transaction: a
    database crash may lose the last few hundred milliseconds of batches, but always
    with their cursor, so the next sync reads them again — never a gap, never a fake
    "done". Nothing on other databases."""
    if db.vendor == "postgresql" and db.in_atomic_block:
        with db.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")


def copy_rows(
    model: type[models.Model],
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: str | None,
    returning: str = "id",
) -> list[Any]:
    """`insert_rows` by COPY (PostgreSQL): the rows go into a session-local staging table
    shaped like the model's columns (no constraints, no defaults: nothing is computed
    twice), then one `INSERT … SELECT … [ON CONFLICT … DO NOTHING] RETURNING` moves them —
    the same dedup guarantee as the VALUES path, one round trip for any number of rows.
    The staging table is emptied before and after, inside one transaction (a savepoint
    when the caller has one open)."""
    if not rows:
        return []
    fields = _fields(model)
    plan = _Plan(model, fields)
    stage = db.ops.quote_name(f"vectis_stage_{model._meta.db_table}")
    columns = ", ".join(db.ops.quote_name(field.column) for field in fields)
    definitions = ", ".join(f"{db.ops.quote_name(f.column)} {_column_type(f)}" for f in fields)
    writers = [_copy_writer(field) for field in fields]
    lines = [
        "\t".join([write(value) for write, value in zip(writers, _values(row, plan), strict=True)])
        for row in rows
    ]
    buffer = io.StringIO("\n".join(lines) + "\n")
    tail = f"ON CONFLICT {conflict} DO NOTHING " if conflict else ""
    with transaction.atomic(), db.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({definitions})")
        cursor.execute(f"TRUNCATE {stage}")
        cursor.copy_expert(f"COPY {stage} ({columns}) FROM STDIN", buffer)
        cursor.execute(
            f"INSERT INTO {table(model)} ({columns}) SELECT {columns} FROM {stage} "
            f"{tail}RETURNING {column(model, returning)}"
        )
        inserted = [row[0] for row in cursor.fetchall()]
        cursor.execute(f"TRUNCATE {stage}")
    return inserted


def update_returning(
    model: type[models.Model],
    values: Mapping[str, Any],
    *,
    where: str,
    params: Sequence[Any],
    returning: str = "id",
) -> list[Any]:
    """`UPDATE … SET <values> WHERE <where> RETURNING <field>`: a claim. Only the rows
    that matched `where` at that moment change, and only they come back, so the caller
    records history for exactly the rows it changed itself. `values` are keyed by field
    name (`auto_now` fields are stamped unless given); `where` uses `column()` for its
    columns and %s for its `params`."""
    assignments = []
    set_params: list[Any] = []
    stamped = {
        field.name: timezone.now()
        for field in model._meta.concrete_fields
        if getattr(field, "auto_now", False) and field.name not in values
    }
    for name, value in {**values, **stamped}.items():
        field = model._meta.get_field(name)
        assert isinstance(field, models.Field)
        assignments.append(f"{db.ops.quote_name(field.column)} = %s")
        set_params.append(_converter(field)(value))
    sql = (
        f"UPDATE {table(model)} SET {', '.join(assignments)} WHERE {where} "
        f"RETURNING {column(model, returning)}"
    )
    return [row[0] for row in _fetch(sql, [*set_params, *(_parameter(p) for p in params)])]
