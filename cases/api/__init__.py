"""The /api/v1 endpoints of the cases app: cases, tasks, customers, organizations."""
