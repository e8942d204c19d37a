"""Waiting on a log line: the event some background work reports only by logging it."""

import logging
import threading


class LogWatch(logging.Handler):
    """Counts the records of one logger whose message contains ``words``; ``wait`` takes one."""

    def __init__(self, logger: str, words: str) -> None:
        super().__init__()
        self.words = words
        self._logger = logging.getLogger(logger)
        self._seen = threading.Semaphore(0)

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self._seen.release()

    def wait(self, timeout: float = 10) -> bool:
        """True once a record not waited for yet has been seen, False after ``timeout`` seconds."""
        return self._seen.acquire(timeout=timeout)

    def __enter__(self) -> "LogWatch":
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
