"""Use cases: the only place that combines the pure rules with the store."""
