"""The first-use prompt (clay_qgis/gui/setup_prompt.py) headless: the worker's report from another thread reaches
the GUI thread, "Set up" opens the set-up, "Not now" keeps quiet for a while (a batch must not ask each time)."""

from __future__ import annotations

import threading


def answer_with(prompter, label: str, seen: list) -> None:
    """Click the button whose text starts with `label` once the modal box is up."""
    from qgis.PyQt.QtCore import QTimer

    def click():
        box = prompter.last_box
        if box is None:
            QTimer.singleShot(50, click)
            return
        seen.append(box.text())
        next(button for button in box.buttons() if button.text().startswith(label)).click()

    QTimer.singleShot(50, click)


def test_set_up_opens_the_setup_and_not_now_keeps_quiet(qgis_app):
    from clay_qgis.gui.setup_prompt import RuntimePrompter

    opened, seen = [], []
    prompter = RuntimePrompter(None, lambda: opened.append(True))
    answer_with(prompter, "Set up", seen)
    assert prompter.prompt("no Clay runtime (Python with PyTorch) is set up yet: ...") is True
    assert opened == [True] and "Clay runtime" in seen[0]
    answer_with(prompter, "Not now", seen)
    assert prompter.prompt("no Clay runtime ... is set up yet") is False
    assert prompter.declined_at is not None
    assert prompter.prompt("again, right after") is False  # no box this time
    assert len(seen) == 2 and opened == [True]


def test_a_report_from_a_processing_thread_is_shown_in_the_gui_thread(qgis_app):
    from qgis.PyQt.QtCore import QCoreApplication, QThread

    from clay_qgis.gui.setup_prompt import RuntimePrompter

    class Recording(RuntimePrompter):
        shown_in: list = []

        def prompt(self, message: str = "") -> bool:  # no modal box: record where it would be shown
            self.shown_in.append((QThread.currentThread(), message))
            return False

    prompter = Recording(None, lambda: None)
    worker_thread = threading.Thread(target=prompter.notify, args=("no Clay runtime",))
    worker_thread.start()
    worker_thread.join()
    for _ in range(50):
        QCoreApplication.processEvents()
        if prompter.shown_in:
            break
    assert prompter.shown_in == [(QCoreApplication.instance().thread(), "no Clay runtime")]
