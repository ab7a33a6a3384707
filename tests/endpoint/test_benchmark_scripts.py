"""The endpoint benchmarks' own clients stay bounded when a server misbehaves."""

import importlib.util

import pytest

from tests.cli.conftest import REPO


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_raw_socket_reader_stops_when_the_server_closes_without_done(stub):
    server = stub(drop_after_chunks=2)  # closes the connection mid-stream: no [DONE] will ever come
    raw_socket = load("endpoint_vs_guidellm").raw_socket
    with pytest.raises(SystemExit, match="without data: \\[DONE\\]"):
        raw_socket(f"http://127.0.0.1:{server.port}", 1, 4, 8)
