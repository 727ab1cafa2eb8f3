"""Implementations of the ResultStore port: PostgreSQL in production, SQLite in the embedded mode."""
