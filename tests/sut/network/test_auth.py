import os

import pytest

from sut.errors import ConfigError
from sut.network import auth


def token_file(tmp_path, mode=0o600, text="0123456789abcdef0123456789abcdef\n"):
    path = tmp_path / "token"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_token_is_read_stripped(tmp_path):
    assert auth.read_token(token_file(tmp_path)) == b"0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_token_file_others_may_read_is_refused(tmp_path, mode):
    path = token_file(tmp_path, mode)
    with pytest.raises(ConfigError, match="may be read by group or others .* chmod 600"):
        auth.read_token(path)


def test_short_or_missing_token_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="at least 16"):
        auth.read_token(token_file(tmp_path, text="short"))
    with pytest.raises(ConfigError, match="cannot be read"):
        auth.read_token(str(tmp_path / "absent"))


def test_token_check_is_exact():
    token = b"0123456789abcdef"
    assert auth.allowed(auth.metadata(token), token)
    assert not auth.allowed(auth.metadata(b"0123456789abcdeX"), token)
    assert not auth.allowed((), token)
    assert auth.allowed((), None)


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:7700", ("127.0.0.1", 7700)), ("[::1]:80", ("::1", 80)), ("host.lan:0", ("host.lan", 0))])
def test_addresses(text, expected):
    assert auth.parse_address(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "host:port", "host:70000", ":7700"])
def test_bad_addresses_are_refused(text):
    with pytest.raises(ConfigError, match="HOST:PORT|valid port"):
        auth.parse_address(text)


def test_loopback():
    assert auth.is_loopback("127.0.0.1") and auth.is_loopback("::1") and auth.is_loopback("localhost")
    assert not auth.is_loopback("0.0.0.0") and not auth.is_loopback("192.168.1.2")
