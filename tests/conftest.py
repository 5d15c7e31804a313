"""Fixtures shared by every test live in tests/fixtures/, one module per kind of resource."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.storage",
    "tests.fixtures.services",
    "tests.fixtures.distribution",
    "tests.fixtures.auth",
    "tests.fixtures.processes",
    "tests.fixtures.jobs",
    "tests.fixtures.jobs_context",
    "tests.fixtures.management",
    "tests.fixtures.migration",
]
