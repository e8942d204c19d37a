"""XPath 1.0 for QueryResourceProperties, bounded in what it may call and in how long it runs.

lxml evaluates an XPath with the EXSLT libraries on: ``re:test('aaa…a!', '^(a+)+$')``
backtracks in Python's ``re`` for minutes with the GIL held, and the string, set, math
and date functions are callable too. And nothing bounds plain XPath: each nested
``count(//*[...])`` multiplies the work by the document's size, in libxml2 code that no
thread can interrupt and for which lxml offers no step budget.

So an expression is checked first (its length and nesting, and calls only to the XPath 1.0
core function library), then evaluated in a worker process under a time and a memory
limit; a worker that overruns is killed and replaced. Only a process boundary really
bounds work done in C. Workers are fresh interpreters (a fork of the threaded service
could inherit its locks held), started once and reused: a query costs a round trip
through a pipe.
"""

import json
import os
import re
import resource
import subprocess
import sys
import threading
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO

from lxml import etree

from vws.affinity import unpinned
from vws.errors import InvalidQuery, QueryEvaluationFailed
from vws.xmlparse import parse

MAX_LENGTH = 4096  # characters of one expression
MAX_NESTING = 16  # brackets and parentheses open at once
MAX_SECONDS = 1.0  # evaluation time of one query, in its worker
MAX_ANSWER_BYTES = 1024 * 1024  # the serialized result of one query
WORKERS = 2  # queries evaluated at once; others wait up to MAX_SECONDS for a worker
WORKER_MEMORY_BYTES = 512 * 1024 * 1024  # address space of one worker
BOOT_SECONDS = 30  # for a worker to start (an interpreter importing lxml, on a loaded machine)
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])  # where a worker imports vws from

# The XPath 1.0 core function library (section 4), node tests that look like calls, and
# operator names a call-like "and(" may be; any other function, EXSLT's included, is refused.
CORE_FUNCTIONS = frozenset(
    "last position count id local-name namespace-uri name string concat starts-with contains "
    "substring-before substring-after substring string-length normalize-space translate "
    "boolean not true false lang number sum floor ceiling round".split()
)
_CALL_LIKE = CORE_FUNCTIONS | {"comment", "text", "processing-instruction", "node", "and", "or", "div", "mod"}
_TOKENS = re.compile(
    r"""\s*(?:
        (?P<literal>"[^"]*"|'[^']*')
      | (?P<name>[^\W\d][\w.\-]*(?::(?:[^\W\d][\w.\-]*|\*))?)(?P<call>\s*\()?
      | (?P<open>[(\[])
      | (?P<close>[)\]])
      | \S
    )""",
    re.VERBOSE,
)

Result = bool | float | str | list[etree._Element | str]


def evaluate(document: etree._Element, expression: str, namespaces: Mapping[str, str]) -> Result:
    """``expression`` on ``document`` (as the root of its own tree), or the fault saying why not."""
    check(expression)
    try:
        etree.XPath(expression, namespaces=dict(namespaces), regexp=False)
    except etree.XPathSyntaxError as exc:
        raise InvalidQuery(f"invalid XPath {expression!r}: {exc}") from None
    return _SANDBOX.evaluate(etree.tostring(document, encoding=str), expression, dict(namespaces))


def check(expression: str) -> None:
    """Refuse, before any evaluation, what is too long, too deeply nested, or calls outside XPath 1.0."""
    if not expression or len(expression) > MAX_LENGTH:
        raise InvalidQuery(f"an XPath expression of 1 to {MAX_LENGTH} characters is required")
    depth = 0
    for token in _TOKENS.finditer(expression):
        if token["call"] and token["name"] not in _CALL_LIKE:
            raise QueryEvaluationFailed(f"{token['name']}() is not an XPath 1.0 core function")
        depth += 1 if token["open"] or token["call"] else -1 if token["close"] else 0
        if depth > MAX_NESTING:
            raise InvalidQuery(f"an XPath expression may nest at most {MAX_NESTING} brackets")


class _Worker:
    """A fresh interpreter (never a fork of the threaded service) answering queries on its stdin."""

    def __init__(self) -> None:
        with unpinned():
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": os.pathsep.join([_SOURCE_ROOT, os.environ.get("PYTHONPATH", "")])},
            )
        self._requests = _connection(self._process.stdin, readable=False)
        self._replies = _connection(self._process.stdout, writable=False)
        try:
            self._receive(BOOT_SECONDS)  # its hello: from now on only evaluation is timed
        except (TimeoutError, EOFError):
            self.kill()
            raise RuntimeError("an XPath worker process did not start") from None

    def ask(self, request: dict, seconds: float) -> dict:
        """The worker's reply; TimeoutError when it has none within ``seconds``, EOFError when it died."""
        try:
            self._requests.send_bytes(json.dumps(request).encode())
        except OSError:
            raise EOFError from None
        return self._receive(seconds)

    def _receive(self, seconds: float) -> dict:
        if not self._replies.poll(seconds):
            raise TimeoutError
        return json.loads(self._replies.recv_bytes())

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()
        self._requests.close()
        self._replies.close()


def _connection(pipe: IO[bytes], **direction: bool) -> Connection:
    """A message connection that owns the pipe's file descriptor (the pipe object lets go of it)."""
    connection = Connection(os.dup(pipe.fileno()), **direction)
    pipe.close()
    return connection


class Sandbox:
    """Up to ``workers`` worker processes; a query waits at most ``seconds`` for one, then as long to run."""

    def __init__(self, workers: int = WORKERS, seconds: float = MAX_SECONDS) -> None:
        self._seconds = seconds
        self._slots = threading.BoundedSemaphore(workers)
        self._idle: list[_Worker] = []
        self._guard = threading.Lock()

    def evaluate(self, document: str, expression: str, namespaces: dict[str, str]) -> Result:
        if not self._slots.acquire(timeout=self._seconds):
            raise QueryEvaluationFailed("the service is busy evaluating other queries; try again")
        try:
            reply = self._ask({"document": document, "expression": expression, "namespaces": namespaces})
        finally:
            self._slots.release()
        if "error" in reply:
            raise QueryEvaluationFailed(f"XPath {expression!r} could not be evaluated: {reply['error']}")
        if "nodes" in reply:
            return [parse(node.encode()) if element else node for element, node in reply["nodes"]]
        return reply["value"]

    def _ask(self, request: dict) -> dict:
        """A worker's reply; a worker that overran or died is killed, and its query refused."""
        worker = self._take()
        try:
            reply = worker.ask(request, self._seconds)
        except TimeoutError:
            worker.kill()
            raise QueryEvaluationFailed(
                f"XPath {request['expression']!r} took longer than {self._seconds:g} s"
            ) from None
        except EOFError:
            worker.kill()
            raise QueryEvaluationFailed(f"XPath {request['expression']!r} stopped the process evaluating it") from None
        with self._guard:
            self._idle.append(worker)
        return reply

    def _take(self) -> _Worker:
        with self._guard:
            if self._idle:
                return self._idle.pop()
        return _Worker()


_SANDBOX = Sandbox()


# ---- in the worker process ------------------------------------------------------------------


def _serve() -> None:
    """Answer queries until the service closes the pipe (or goes away)."""
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    requests, replies = Connection(0, writable=False), Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # whatever else prints goes to stderr, not into the replies
    replies.send_bytes(b"{}")
    while True:
        try:
            request = json.loads(requests.recv_bytes())
        except EOFError:
            return
        reply = json.dumps(_answer(**request)).encode()
        if len(reply) > MAX_ANSWER_BYTES:
            reply = json.dumps({"error": f"its answer would exceed {MAX_ANSWER_BYTES} bytes"}).encode()
        replies.send_bytes(reply)


def _answer(document: str, expression: str, namespaces: dict[str, str]) -> dict[str, object]:
    """The result as JSON can carry it: a value, or nodes as (is an element, its XML or text)."""
    try:
        xpath = etree.XPath(expression, namespaces=namespaces, regexp=False, smart_strings=False)
        result = xpath(etree.ElementTree(parse(document.encode())))  # the document alone: `/` is its root
    except (etree.XPathError, MemoryError) as exc:
        return {"error": str(exc) or type(exc).__name__}
    if not isinstance(result, list):
        return {"value": result}
    return {"nodes": [(True, _xml(node)) if _is_element(node) else (False, str(node)) for node in result]}


def _xml(element: etree._Element) -> str:
    return etree.tostring(element, encoding=str, with_tail=False)


def _is_element(node: object) -> bool:
    return isinstance(node, etree._Element) and isinstance(node.tag, str)  # not a comment or PI


if __name__ == "__main__":
    _serve()
