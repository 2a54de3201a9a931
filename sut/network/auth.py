"""The shared secret that lets a LoadGen node use a SUT node, and where nodes listen.

Both sides read the same ``--token-file``; a file that group or others may
read is refused (the secret would not be one). The LoadGen node sends the
token in the gRPC metadata of every call; the node compares it in constant
time. The token travels in clear text: on an untrusted network, tunnel the
connection (ssh -L, WireGuard).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat

from sut.errors import ConfigError

METADATA_KEY = "x-mlperf-edge-token"
MIN_TOKEN_BYTES = 16
MAX_TOKEN_BYTES = 4096
DEFAULT_PORT = 7700


def read_token(path: str) -> bytes:
    """The token in ``path`` (surrounding whitespace stripped); ConfigError
    when the file is missing, readable by group/others, too short or too long."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError("--token-file %s cannot be read: %s" % (path, exc.strerror or exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("--token-file %s is not a regular file" % path)
    if st.st_mode & 0o077:
        raise ConfigError("--token-file %s may be read by group or others (mode %s): run chmod 600 %s"
                          % (path, oct(stat.S_IMODE(st.st_mode)), path))
    if st.st_size > MAX_TOKEN_BYTES:
        raise ConfigError("--token-file %s is %d bytes; a token is at most %d" % (path, st.st_size, MAX_TOKEN_BYTES))
    with open(path, "rb") as f:
        token = f.read().strip()
    if len(token) < MIN_TOKEN_BYTES:
        raise ConfigError("--token-file %s holds %d bytes; use at least %d random ones, e.g. "
                          "python -c \"import secrets; print(secrets.token_hex(32))\" > %s"
                          % (path, len(token), MIN_TOKEN_BYTES, path))
    return token


def metadata(token: bytes | None) -> tuple:
    """gRPC call metadata carrying ``token`` (none without a token)."""
    return ((METADATA_KEY, token.decode("latin-1")),) if token else ()


def allowed(invocation_metadata, token: bytes | None) -> bool:
    """Whether a call's metadata carries ``token`` (always, when the node has none)."""
    if token is None:
        return True
    sent = b""
    for key, value in invocation_metadata or ():
        if key == METADATA_KEY:
            sent = value.encode("latin-1") if isinstance(value, str) else bytes(value)
    return hmac.compare_digest(sent, token)


def parse_address(text: str, what: str = "--nodes", default_host: str | None = None) -> tuple:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) -> (host, port); ConfigError when malformed."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = (default_host or ""), text
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host and default_host is None:
        raise ConfigError("%s entry '%s' needs HOST:PORT, e.g. 127.0.0.1:%d" % (what, text, DEFAULT_PORT))
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise ConfigError("%s entry '%s' has no valid port (0-65535), e.g. 127.0.0.1:%d" % (what, text, DEFAULT_PORT))
    return host or default_host, number


def join_address(host: str, port: int) -> str:
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
