"""Commands run by people, not services: `make run` (registry-local), the schema, migrations."""
