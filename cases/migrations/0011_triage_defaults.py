"""Seed triage's default categories and rules (English and German) on a new install.

Only into empty tables: an install that already has categories or rules keeps its own.
"""

from django.db import migrations


def seed(apps, schema_editor):
    from cases.services.triage import triage_seed_defaults

    triage_seed_defaults(apps=apps)


class Migration(migrations.Migration):
    dependencies = [("cases", "0010_triage")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
