"""Database models and the store."""
