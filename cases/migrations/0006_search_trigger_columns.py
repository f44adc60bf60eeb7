"""The search triggers fire only when a searched column is written.

They fired on every UPDATE, so moving a case's clock or status recomputed its tsvector from
the title and the whole description; intake updates a case for every message it joins.
"""

from django.db import migrations

from crm.db import PostgresOnlySQL

SEARCHED_COLUMNS = {
    "cases_case": "number, title, description",
    "cases_task": "subject, description",
    "cases_customer": "name, notes",
}


def retrigger(table: str, columns: str) -> PostgresOnlySQL:
    return PostgresOnlySQL(
        sql=f"""
        DROP TRIGGER {table}_search_vector_trg ON {table};
        CREATE TRIGGER {table}_search_vector_trg BEFORE INSERT OR UPDATE OF {columns} ON {table}
            FOR EACH ROW EXECUTE FUNCTION {table}_search_vector();
        """,
        reverse_sql=f"""
        DROP TRIGGER {table}_search_vector_trg ON {table};
        CREATE TRIGGER {table}_search_vector_trg BEFORE INSERT OR UPDATE ON {table}
            FOR EACH ROW EXECUTE FUNCTION {table}_search_vector();
        """,
    )


class Migration(migrations.Migration):
    dependencies = [("cases", "0005_email_intake")]

    operations = [retrigger(table, columns) for table, columns in SEARCHED_COLUMNS.items()]
