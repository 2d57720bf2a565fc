"""The host dies with glia, whatever it is doing.

glia (Linux) has the kernel kill each host when glia dies (`PR_SET_PDEATHSIG`, set before the
host's exec). This is the second guard, for where that signal is not set or not sent: a thread
that watches the host's parent and ends the process when the parent changes (the host was
orphaned and adopted by init or a subreaper). A thread, because the end of standard input is
noticed only by the event loop, which a module blocking in a call (a `time.sleep`, a socket
without a timeout) keeps from running.
"""

from __future__ import annotations

import logging
import os
import threading
import time

logger = logging.getLogger(__name__)

#: How often the parent is looked at, in seconds (a `getppid` each time: nothing to measure).
INTERVAL_S = 0.5
#: The host's exit status when glia is gone.
ORPHANED = 70


def watch_parent(interval: float = INTERVAL_S) -> threading.Thread:
    """Starts the watcher of the current parent; the process exits when that parent is gone."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                logger.error("glia (process %d) is gone; the host exits", parent)
                logging.shutdown()
                os._exit(ORPHANED)

    thread = threading.Thread(target=watch, name="glia-parent-watch", daemon=True)
    thread.start()
    return thread
