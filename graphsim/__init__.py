"""A local Microsoft identity platform and Graph simulator for tests, demo and benchmarks.

It speaks HTTPS with its own test CA, so MSAL and our Graph client run unmodified against it
(only the base URLs and the extra trusted CA differ, as for a national cloud). Production code
never imports this package.
"""
