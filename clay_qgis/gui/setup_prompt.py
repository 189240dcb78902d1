"""First use: when an algorithm needs the Clay runtime and none is set up, offer to set it up.

The algorithm itself fails with one line naming the fix (also in qgis_process); in QGIS desktop the plugin adds
this prompt. Algorithms run in a background thread, so the worker only reports "runtime missing" through
`worker.runtime_missing_listeners`; the prompter lives in the GUI thread and a queued signal carries the
report there, where the dialog may be shown.
"""

from __future__ import annotations

import time

from qgis.PyQt.QtCore import QObject, Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QMessageBox

PROMPT_TITLE = "Clay runtime needed"
PROMPT_TEXT = (
    "<p>This needs the <b>Clay runtime</b>: a separate Python environment with PyTorch and the plugin's "
    "clay_core. It is not set up yet.</p>"
    "<p><b>Set up Clay runtime</b> creates it in your QGIS profile folder (no admin rights needed; about 2 GB "
    "with the CPU build of PyTorch, 5 GB or more with the CUDA build for an NVIDIA GPU). It downloads packages from "
    "the Python package index; behind a proxy or offline, give a mirror in its <i>Extra installer options</i>.</p>"
    "<p>Open the set-up now?</p>"
)
# After "Not now", a batch of runs that all fail the same way must not ask again for each of them.
QUIET_AFTER_DECLINE_S = 120.0


class RuntimePrompter(QObject):
    """Shows the first-use prompt once at a time; `open_setup` opens the clay:setupruntime dialog."""

    requested = pyqtSignal(str)

    def __init__(self, parent, open_setup) -> None:
        super().__init__(parent)
        self.open_setup = open_setup
        self.showing = False
        self.declined_at: float | None = None
        self.last_box: QMessageBox | None = None
        # Queued: emitted from a Processing task thread, handled in the GUI thread.
        self.requested.connect(self.prompt, Qt.ConnectionType.QueuedConnection)

    def notify(self, message: str) -> None:
        """Called by the worker (any thread) when no runtime is configured."""
        self.requested.emit(message)

    def prompt(self, message: str = "") -> bool:
        recently_declined = self.declined_at is not None and time.monotonic() - self.declined_at < QUIET_AFTER_DECLINE_S
        if self.showing or recently_declined:
            return False
        self.showing = True
        try:
            box = QMessageBox(self.parent())
            self.last_box = box
            box.setWindowTitle(PROMPT_TITLE)
            box.setIcon(QMessageBox.Icon.Information)
            box.setTextFormat(Qt.TextFormat.RichText)
            box.setText(PROMPT_TEXT)
            if message and "set up yet" not in message:
                box.setInformativeText(message)  # e.g. the configured runtime was deleted
            setup = box.addButton("Set up Clay runtime…", QMessageBox.ButtonRole.AcceptRole)
            box.addButton("Not now", QMessageBox.ButtonRole.RejectRole)
            box.setDefaultButton(setup)
            box.exec()
            chosen = box.clickedButton() is setup
        finally:
            self.showing = False
            self.last_box = None
        if chosen:
            self.open_setup()
        else:
            self.declined_at = time.monotonic()
        return chosen
