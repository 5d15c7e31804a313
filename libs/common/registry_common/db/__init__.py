"""PostgreSQL access: the pool, the schema, and one module of SQL per aggregate."""
