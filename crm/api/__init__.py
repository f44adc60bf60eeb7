"""API base classes every app's `api.py` builds on, and the kernel's own endpoints."""
