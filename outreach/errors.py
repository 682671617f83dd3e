"""One exception root; each branch tells the caller what to do next."""

from __future__ import annotations


class OutreachError(Exception):
    """Something outreach could not do."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InputError(OutreachError):
    """The input was refused; fix it and try again (CLI exit code 1)."""


class RetryableError(OutreachError):
    """A transient failure; the same work may be retried later."""


class PermanentError(OutreachError):
    """A failure that retrying will not fix; record it and move on."""


# --- input ---------------------------------------------------------------


class SequenceInvalid(InputError):
    """The sequence has errors."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class TemplateInvalid(InputError):
    """The template has errors."""


class UnknownSequence(InputError):
    """No such sequence."""


class UnknownProspect(InputError):
    """No such prospect."""


class UnknownCall(InputError):
    """No such open call task."""


class EnrollmentRefused(InputError):
    """The enrollment was refused."""


# --- rendering -----------------------------------------------------------


class RenderError(PermanentError):
    """The template could not be rendered."""


class MissingVariable(RenderError):
    """A variable the template needs is missing."""

    def __init__(self, name: str) -> None:
        super().__init__(f"missing {name}")
        self.name = name


class RenderLimitExceeded(RenderError):
    """The template went over its output size or render time."""


# --- sending -------------------------------------------------------------


class TransientSendError(RetryableError):
    """The mail server did not take the message this time (4xx, timeout, refused)."""


class PermanentSendError(PermanentError):
    """The mail server refused the message for good (5xx)."""


class AmbiguousSendError(PermanentError):
    """The connection broke after the message data was sent: it may have been delivered."""
