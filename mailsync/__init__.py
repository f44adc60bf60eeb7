"""Mailboxes, folders and messages: Graph delta sync, SMTP intake and sending.

Knows nothing of cases.
"""
