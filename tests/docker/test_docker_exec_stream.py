"""A command's output that arrives with exec_start's response headers is kept (docker-py issue 3332).

Seen on a loaded machine: the scratch folder's path (``mktemp -d``'s output) came back empty.
A loopback server plays the Engine API's exec_start answer — the 101 headers and the first frame
in one write, as a daemon does for a quick command — to docker-py's own client.
"""

from __future__ import annotations

import socket
import struct
import threading

import docker

from agentdata_tui.sandbox import docker as dsb

FRAME = struct.pack(">BxxxL", 1, 6) + b"/tmp/x"
HEADERS = (
    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
    b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
)


def _one_answer(listener: socket.socket, done: threading.Event) -> None:
    conn, _ = listener.accept()
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length"))
        )
        while len(body) < length:
            body += conn.recv(65536)
        conn.sendall(HEADERS + FRAME)  # one write: the client reads both at once
        done.wait(30)


def test_output_sent_with_the_headers_is_not_lost() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()
    server = threading.Thread(target=_one_answer, args=(listener, done), daemon=True)
    server.start()
    try:
        api = docker.APIClient(
            base_url=f"tcp://127.0.0.1:{listener.getsockname()[1]}", version="1.41", timeout=10
        )
        sock = api.exec_start("abc", socket=True)
        raw = getattr(sock, "_sock", sock)
        raw.settimeout(0.2)
        try:  # the socket docker-py hands out has nothing left: the frame sits in its buffer
            beneath = raw.recv(65536)
        except TimeoutError:
            beneath = b""
        assert FRAME not in beneath
        raw.settimeout(10)
        out = dsb._Output()
        frames = dsb._Demux(out)
        frames.feed(dsb._buffered(sock, raw))
        assert out.text() == "/tmp/x"
        assert raw.gettimeout() == 10, "the socket's timeout is restored"
        assert dsb._buffered(sock, raw) == b"", "nothing more, and no wait"
    finally:
        done.set()
        listener.close()
        server.join(10)
