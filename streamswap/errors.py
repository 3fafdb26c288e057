"""Exceptions the user can act on. The CLI turns each into one line and a non-zero exit."""


class StreamSwapError(Exception):
    """Base class: its message is shown to the user as one line (say what is wrong and what to do).
    Credentials of any URL in the message are replaced by `***` (`streamswap.redact`)."""

    exit_code = 1

    def __init__(self, *args: object) -> None:
        from streamswap.redact import redact_url

        super().__init__(*(redact_url(a) if isinstance(a, str) else a for a in args))


class InputError(StreamSwapError):
    """A user-supplied file, URL or option is unusable (missing, unreadable, wrong kind)."""

    exit_code = 2


class ModelError(StreamSwapError):
    """A model file is missing, corrupt, not the expected model, or cannot be fetched."""

    exit_code = 3


class NoFaceError(StreamSwapError):
    """An image that must contain a face contains none (or too many to choose from)."""

    exit_code = 4


class PipelineError(StreamSwapError):
    """A stage of the running pipeline failed; the message names the stage. The graph that
    raises it also sets `stage` and `item` (the failed stage's name and item, where known)."""

    exit_code = 5
    stage: str | None  # declared only: set on the errors the stream graph raises
    item: int | None
