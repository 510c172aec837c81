"""What every kiu.api model shares: frozen, strict, camelCase on the wire, and rule errors
that carry the CRD's own messages."""

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError


class Frozen(BaseModel):
    """Immutable; strict types; wire names are camelCase aliases, Python names snake_case.
    Unknown fields are ignored, so a reader older than the CRD keeps working."""

    model_config = ConfigDict(
        frozen=True,
        strict=True,
        extra="ignore",
        alias_generator=to_camel,
        populate_by_name=True,
    )


def rule_error(message: str) -> PydanticCustomError:
    """A validation error with a CRD rule's message.

    The message is passed as context, not as the template, so braces in a user's value stay.
    """
    return PydanticCustomError("rule", "{message}", {"message": message})
