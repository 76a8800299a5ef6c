"""The one error every morphism raises when a request cannot be honoured."""


class MorphError(ValueError):
    """A morphism cannot be applied as asked (the message names the node and why)."""
