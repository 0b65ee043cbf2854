"""The registration as a QgsTask: QGIS stays responsive, the task manager shows progress and cancel."""

from __future__ import annotations

from typing import Callable

from qgis.core import QgsTask

from ..toolbelt.engine import Engine
from ..toolbelt.log import log_info
from ..toolbelt.registration import RegistrationOutcome, run_registration
from ..toolbelt.request import RegistrationRequest


class RegistrationTask(QgsTask):
    """Runs one `RegistrationRequest`; `on_done(outcome)` is called in the main thread at the end."""

    def __init__(
        self,
        request: RegistrationRequest,
        engine: Engine,
        on_done: Callable[[RegistrationOutcome], None],
    ) -> None:
        name = f"Co-registering {_short(request.moving)} onto {_short(request.reference)}"
        super().__init__(name, QgsTask.CanCancel)
        self.request = request
        self.engine = engine
        self.outcome: RegistrationOutcome | None = None
        self._on_done = on_done

    def run(self) -> bool:
        # Worker thread: no GUI calls here, only the task's own progress and the (thread-safe) message log.
        try:
            self.outcome = run_registration(
                self.request,
                self.engine,
                progress=lambda fraction, stage: self.setProgress(100.0 * fraction),
                is_canceled=self.isCanceled,
                log=log_info,
            )
        except Exception as exc:  # noqa: BLE001 (a task must end with a message, never an unhandled error)
            self.outcome = RegistrationOutcome("error", f"{type(exc).__name__}: {exc}")
        return self.outcome.ok and not self.isCanceled()

    def finished(self, result: bool) -> None:  # noqa: ARG002 (the outcome says more than the flag)
        # Main thread.
        outcome = self.outcome
        if outcome is None or self.isCanceled():
            outcome = RegistrationOutcome("canceled", "Registration cancelled: nothing was written.")
        self._on_done(outcome)


def _short(source: str) -> str:
    return source.replace("\\", "/").rsplit("/", 1)[-1]
