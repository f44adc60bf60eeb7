"""Believable demo data for `manage.py seed_demo`: teams, agents, organizations, customers,
cases with their history, and tasks.

It runs with the runtime requirements only (no Faker, no factory_boy): the words come from
`cases.demo.data`, the choices from one seeded `random.Random`, and every row is written by the
services, as in real use. `cases.demo.seed` holds the entry points.
"""
