"""Where the service's log lines go, as ``[logging]`` says: stderr, a file, or syslog.

Every handler passes its records through ``Redaction`` first: a line may quote what a
user sent or a node answered (an image URL, a libvirt error), and neither a password in
a URL nor a PEM key or certificate block may reach a log, whichever logger wrote it.
"""

import logging
import logging.handlers
import re
import sys

from vws.config import ConfigError, LoggingConfig

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_SYSLOG_FORMAT = "vws[%(process)d]: %(levelname)s %(name)s: %(message)s"  # syslog adds time and host
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/\s:@]*):[^/\s@]*@")
_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.DOTALL)


def redact(text: str) -> str:
    """``text`` without passwords in URLs (user:***@) and without PEM blocks."""
    return _PEM_BLOCK.sub("[PEM block redacted]", _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text))


class Redaction(logging.Filter):
    """Rewrites each record's message (and a traceback's text) through ``redact``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def configure(config: LoggingConfig, level: str | None = None) -> None:
    """Send the root logger's records at ``level`` (else the configured one) where ``config`` says."""
    handler = _handler(config)
    handler.addFilter(Redaction())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((level or config.level).upper())


def _handler(config: LoggingConfig) -> logging.Handler:
    if config.destination == "file":
        assert config.file is not None  # LoggingConfig makes sure of it
        try:
            handler: logging.Handler = logging.handlers.WatchedFileHandler(config.file)
        except OSError as exc:
            raise ConfigError(f"cannot open the log file {config.file}: {exc.strerror}", ("logging", "file")) from None
    elif config.destination == "syslog":
        handler = logging.handlers.SysLogHandler(_syslog_address(config.syslog_address), config.syslog_facility)
        handler.setFormatter(logging.Formatter(_SYSLOG_FORMAT))
        return handler
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    return handler


def _syslog_address(address: str) -> str | tuple[str, int]:
    """A socket path as it is; host:port as a UDP address."""
    if address.startswith("/"):
        return address
    host, _, port = address.rpartition(":")
    return (host.strip("[]") or "localhost", int(port))  # LoggingConfig checked it
