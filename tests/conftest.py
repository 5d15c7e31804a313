"""Fixtures shared by every test live in tests/fixtures/, one module per kind of resource."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.storage",
    "tests.fixtures.services",
    "tests.fixtures.distribution",
]
