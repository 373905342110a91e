"""Server metadata behind one contract: repos, commits, trees, file and chunk indexes on SQLite or PostgreSQL."""
