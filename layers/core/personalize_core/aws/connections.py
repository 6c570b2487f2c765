"""One endpoint's keep-alive connections and credentials: what the S3 reader and the JSON client share.

Thread-safe: a request takes an idle connection (or a new one) and gives it back once its answer
has been read to the end; a connection that failed mid-answer is closed instead (it holds unread
bytes). Credentials are read once, on first use, and forgotten with the connections by ``reset``
(after a SnapStart restore both are stale).
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable

from personalize_core.aws.sigv4 import Credentials, environment_credentials


class Endpoint:
    def __init__(
        self,
        scheme: str,
        netloc: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        credentials: Callable[[], Credentials] = environment_credentials,
    ) -> None:
        self.scheme = scheme
        self.netloc = netloc
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._credentials_source = credentials
        self._credentials: Credentials | None = None
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []

    @property
    def host(self) -> str:
        """The Host header (without the scheme's default port, as botocore signs it)."""
        return self.netloc.removesuffix(":443" if self.scheme == "https" else ":80")

    def credentials(self) -> Credentials:
        """The credentials, read on first use; raises CredentialsMissing (the caller says how)."""
        with self._lock:
            if self._credentials is None:
                self._credentials = self._credentials_source()
            return self._credentials

    def acquire(self) -> http.client.HTTPConnection:
        """An idle keep-alive connection, or a new one (not connected yet: ``connect`` does it)."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return kind(self.netloc, timeout=self.connect_timeout)

    def connect(self, connection: http.client.HTTPConnection) -> None:
        """Connect (if it is not), then wait ``read_timeout`` for answers, with no Nagle delay."""
        if connection.sock is None:
            connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(self.read_timeout)
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def release(self, connection: http.client.HTTPConnection) -> None:
        """Give back a connection whose answer was read to the end."""
        with self._lock:
            self._idle.append(connection)

    def reset(self) -> None:
        """Forget connections and credentials."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._credentials = None
        for connection in idle:
            connection.close()
