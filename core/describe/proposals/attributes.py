"""Attributes a failure can be described by (background, colour, or user-defined) and the question asked per class."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import InvalidInputError

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class Attribute:
    name: str  # short identifier used in cache paths and curated lists, e.g. "background"
    question: str  # asked per class; must contain "{class_name}"
    prompt_version: str = "1"  # bump when the question's wording changes meaningfully, so caches refresh

    def __post_init__(self):
        if not _NAME.match(self.name or ""):
            raise InvalidInputError(
                f"Attribute name {self.name!r} is not usable: use 1-40 lower-case letters, digits or '_', "
                "starting with a letter (e.g. 'texture')."
            )
        if "{class_name}" not in (self.question or ""):
            raise InvalidInputError(
                f"The question for attribute {self.name!r} must contain '{{class_name}}' where the class goes, "
                f"e.g. 'What are the uncommon textures that a {{class_name}} can have?'. Got: {self.question!r}."
            )
        try:
            self.question.format(class_name="x")
        except (KeyError, IndexError, ValueError) as e:
            raise InvalidInputError(
                f"The question for attribute {self.name!r} may only use the placeholder '{{class_name}}' "
                f"(write literal braces as '{{{{' and '}}}}'); it failed with {e!r}."
            ) from None

    def ask(self, class_name: str) -> str:
        return self.question.format(class_name=class_name)


# The question of the paper (sections 4.1-4.2).
BACKGROUND = Attribute("background", "What are the uncommon backgrounds that a {class_name} can appear in?")
COLOUR = Attribute("colour", "What are the uncommon colours that a {class_name} can have?")

BUILTIN = {a.name: a for a in (BACKGROUND, COLOUR)}


def custom_attribute(name: str, question: str, prompt_version: str = "1") -> Attribute:
    """A user-defined attribute, e.g. ``custom_attribute("texture", "What unusual textures can a {class_name} have?")``."""
    if name in BUILTIN and BUILTIN[name].question != question:
        raise InvalidInputError(f"{name!r} is a built-in attribute; pick another name for a custom question.")
    return Attribute(name, question, prompt_version)


def get_attribute(attribute: Attribute | str) -> Attribute:
    """An ``Attribute`` as given, or the built-in one of that name."""
    if isinstance(attribute, Attribute):
        return attribute
    try:
        return BUILTIN[attribute]
    except (KeyError, TypeError):
        raise InvalidInputError(
            f"Unknown attribute {attribute!r}: built-in ones are {', '.join(BUILTIN)}; define others with "
            "custom_attribute(name, question)."
        ) from None
