"""The one exception type users see: its message is a complete one-line explanation."""


class GuidedGradCamError(Exception):
    """Bad input or environment; the CLI prints `error: <message>` and exits non-zero."""


class ImageError(GuidedGradCamError):
    """An image file that cannot be read (missing, empty, truncated, not an image)."""


class CheckpointError(GuidedGradCamError):
    """A checkpoint that is missing, cannot be fetched, or does not fit the network."""


def first_line(error):
    """The first line of an exception's message (TF's are long), or its type's name."""
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
