"""Database helpers shared by apps' migrations and queries.

Schema only PostgreSQL has (tsvector triggers, GIN and trigram indexes) goes through
`PostgresOnlySQL`, so the embedded default on SQLite still migrates (DESIGN.md "Processes").
"""

from __future__ import annotations

from django.db import connection, migrations


class PostgresOnlySQL(migrations.RunSQL):
    """RunSQL that does nothing on other database vendors."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"
