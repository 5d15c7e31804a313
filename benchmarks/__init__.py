"""`make bench`: this service against the reference registry (see __main__.py)."""
