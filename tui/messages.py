"""Messages the app passes around: trace records arrive in batches, never one per segment."""

from __future__ import annotations

from textual.message import Message

from lab.trace import TraceRecord


class TraceBatch(Message):
    """New trace records from the run, in order; ``generation`` changes when a replay seeks."""

    def __init__(self, records: list[TraceRecord], generation: int = 0) -> None:
        super().__init__()
        self.records = records
        self.generation = generation


class RunFinished(Message):
    """The run's record stream ended (the scenario finished or the replay reached its end)."""

    def __init__(self, reader: int = 0) -> None:
        super().__init__()
        self.reader = reader


class StatusSampled(Message, bubble=False):
    """The latest run status; a queued older one is dropped."""

    def __init__(self, status: object) -> None:
        super().__init__()
        self.status = status

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StatusSampled)


class ControlRequested(Message):
    """A view asks the app to run a control (``action`` is an app action string)."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
