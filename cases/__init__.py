"""Customers, cases, tasks, SLA, workflows, email-to-case intake and the agent web UI."""
