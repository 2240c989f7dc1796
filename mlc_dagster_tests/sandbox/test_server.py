"""The sandbox server's port check: a port left in TIME_WAIT is free, a listening one is not."""

import socket

import pytest

from mlc_sandbox.server import check_port_free


def _time_wait_port() -> int:
    """A port whose last connection the server side closed first, so it sits in TIME_WAIT."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the active close: this end (the sandbox's port) enters TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    return port


def test_a_port_in_time_wait_counts_as_free():
    """Ctrl-C then `make demo` again within a minute used to fail with 'Address already in use'."""
    check_port_free("127.0.0.1", _time_wait_port())


def test_a_listening_port_is_refused_with_a_hint():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(RuntimeError, match="another sandbox or demo still running"):
            check_port_free("127.0.0.1", busy.getsockname()[1])
