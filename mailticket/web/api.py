"""JSON API under /api/v1 (placeholder until the real module lands)."""


def install(app, settings, store) -> None:
    """Adds the API routes to `app`; this placeholder adds none."""
