"""The engine's own expected failures; the portal translates them into its errors (``academy.errors``)."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every expected failure of the engine; the message is one line that names what is wrong."""

    code = "error"

    def __init__(self, message: object) -> None:
        super().__init__(str(message))
        self.message = message

    def __str__(self) -> str:
        return str(self.message)
