"""Personalize's error vocabulary. Logic raises these; one place (``edge.api``) maps them to responses."""

from __future__ import annotations


class PersonalizeError(Exception):
    """An error with a Personalize error code. ``status`` is the REST-JSON status code."""

    code = "InternalFailure"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputException(PersonalizeError):
    code = "InvalidInputException"
    status = 400


class ResourceNotFoundException(PersonalizeError):
    code = "ResourceNotFoundException"
    status = 404


class ResourceAlreadyExistsException(PersonalizeError):
    code = "ResourceAlreadyExistsException"
    status = 400


class ResourceInUseException(PersonalizeError):
    code = "ResourceInUseException"
    status = 400


class LimitExceededException(PersonalizeError):
    code = "LimitExceededException"
    status = 400


class InvalidNextTokenException(PersonalizeError):
    code = "InvalidNextTokenException"
    status = 400


class ServiceUnavailableException(PersonalizeError):
    """A store the request needs cannot be reached now; the request can be retried (botocore does)."""

    code = "ServiceUnavailableException"
    status = 503


class ThrottlingException(PersonalizeError):
    """A store the request needs is throttling it; botocore retries this code with backoff."""

    code = "ThrottlingException"
    status = 400


class AccessDeniedException(PersonalizeError):
    """The caller's IAM policies do not allow the operation (edge/authorization.py)."""

    code = "AccessDeniedException"
    status = 403


class AuthorizationUnavailableError(ServiceUnavailableException):
    """IAM could not be asked whether the caller may act (throttled, unreachable): try again."""


class UnknownOperationException(PersonalizeError):
    code = "UnknownOperationException"
    status = 404


class ModelUnavailableError(ServiceUnavailableException):
    """The model behind a campaign cannot be loaded (S3 fault, corrupt artifact). Not the caller's fault."""


class ArtifactError(Exception):
    """A model artifact is missing or does not match its manifest (raised by loading and publishing)."""


class TooManyTagsException(PersonalizeError):
    code = "TooManyTagsException"
    status = 400
