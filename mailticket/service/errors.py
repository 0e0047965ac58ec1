"""The refusal every use case raises for bad input: its words are shown to the operator (a 4xx, never a 500)."""


class ActionError(ValueError):
    """A refused action, with the reason in words (a 4xx for the web and the API)."""
