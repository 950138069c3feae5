"""The history of QA runs: a store (SQLite or PostgreSQL), what changed between runs, the trend site."""
