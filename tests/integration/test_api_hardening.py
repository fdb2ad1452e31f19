"""The API process under hostile HTTP: an upload streamed past the size limit is cut off at the
limit (413 while the client is still sending, nothing spooled or left behind), a process killed
mid-upload leaves no partial file after its restart."""

from __future__ import annotations

import fcntl
import json
import select
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from scripts.stack import Stack, embedded_env

UPLOAD_LIMIT = 1024 * 1024
BOUNDARY = "flipguard-test-boundary"


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory):
    """The API alone (no worker) on the embedded defaults, with a 1 MiB upload limit and a
    temporary folder of its own, so that a spooled upload would show."""
    home = tmp_path_factory.mktemp("api-hardening")
    (home / "tmp").mkdir()
    env = embedded_env(home) | {
        "FLIPGUARD_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "TMPDIR": str(home / "tmp"),
    }
    stack = Stack(env, log_dir=home / "logs")
    try:
        stack.migrate()
        stack.start_api()
        yield stack
    finally:
        stack.stop()


def models_folder(stack: Stack) -> Path:
    return Path(stack.env["FLIPGUARD_ARTIFACT_ROOT"]) / "models"


class ChunkedUpload:
    """A raw HTTP/1.1 client that streams a multipart upload of POST /models in chunks and
    notices a response that arrives while it is still sending."""

    def __init__(self, stack: Stack):
        self.socket = socket.create_connection(("127.0.0.1", stack.port), timeout=30)
        head = (
            "POST /models HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{stack.port}\r\n"
            f"Authorization: Bearer {stack.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        self.socket.sendall(head.encode())
        self.sent = 0
        self.closed_early = False
        self.chunk(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="family"\r\n\r\nshoes\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="m.safetensors"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )

    def chunk(self, data: bytes) -> bool:
        """Send one chunk; False once the server has answered or closed (stop sending then)."""
        if self.answered():
            return False
        try:
            self.socket.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.closed_early = True
            return False
        self.sent += len(data)
        return True

    def send_file_bytes(self, total: int, *, piece: int = 64 * 1024) -> None:
        while self.sent < total and self.chunk(b"\0" * piece):
            pass

    def answered(self) -> bool:
        return bool(select.select([self.socket], [], [], 0)[0])

    def response(self, timeout_s: float) -> tuple[int, dict]:
        """The status and JSON body of the response (the body is never finished by us)."""
        self.socket.settimeout(timeout_s)
        raw = b""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data = self.socket.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            raw += data
            head, _, body = raw.partition(b"\r\n\r\n")
            length = [
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
            ]
            if length and len(body) >= length[0]:
                break
        assert raw, f"no response within {timeout_s} s after {self.sent} bytes sent"
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)

    def close(self) -> None:
        self.socket.close()


def test_an_upload_past_the_limit_is_cut_off_while_it_is_streamed(api_stack):
    upload = ChunkedUpload(api_stack)
    try:
        # A few MB over the limit, and the body is never finished: only a server that stops
        # reading at the limit can answer.
        upload.send_file_bytes(UPLOAD_LIMIT + 4 * 1024 * 1024)
        status, body = upload.response(timeout_s=20)
    finally:
        upload.close()
    assert status == 413, body
    detail = body["detail"][0]
    # Cut off by the file's size (loc body.file) or, a chunk later, by the body's (loc body).
    assert detail["loc"] in (["body", "file"], ["body"]) and "FLIPGUARD_MAX_UPLOAD_BYTES" in detail["msg"], body
    Stack.wait_until(lambda: not any(models_folder(api_stack).glob("*")), timeout_s=10, what="no partial file")
    assert list((Path(api_stack.env["TMPDIR"])).iterdir()) == []


def test_a_declared_upload_over_the_limit_is_refused_before_it_is_read(api_stack):
    with socket.create_connection(("127.0.0.1", api_stack.port), timeout=30) as raw:
        raw.sendall(
            (
                "POST /models HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{api_stack.port}\r\n"
                f"Authorization: Bearer {api_stack.token}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"Content-Length: {50 * UPLOAD_LIMIT}\r\n\r\n"
            ).encode()
        )
        raw.settimeout(20)
        answer = b""
        while chunk := raw.recv(65536):  # the server closes the connection after a 413
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"FLIPGUARD_MAX_UPLOAD_BYTES" in answer


def test_partial_uploads_of_a_killed_api_are_removed_at_start_up(api_stack):
    folder = models_folder(api_stack)
    upload = ChunkedUpload(api_stack)
    upload.send_file_bytes(256 * 1024)
    partial = Stack.wait_until(
        lambda: next(folder.glob("*.partial"), None), timeout_s=20, what="the upload's partial file"
    )
    api_stack.stop_process(api_stack.api, sig=signal.SIGKILL)
    upload.close()
    assert partial.exists()
    # Another API process, alive, writing an upload of its own: it holds the lock and stays.
    live = folder / "live-upload.partial"
    with open(live, "wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        api_stack.start_api()
        assert not partial.exists()
        assert sorted(path.name for path in folder.iterdir()) == ["live-upload.partial"]
    live.unlink()


def test_cookie_writes_from_another_site_are_refused_by_the_api_process(api_stack):
    own = {"Origin": api_stack.url}
    with httpx.Client(base_url=api_stack.url, timeout=30) as browser:
        login = browser.post("/dashboard/login", data={"token": api_stack.token}, headers=own)
        assert login.status_code == 303 and "flipguard_token" in browser.cookies
        refused = browser.post("/updates/1/cancel", headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"][0] == {
            "loc": ["header", "Origin"],
            "msg": f"cross-site request refused: Origin https://evil.example is not {api_stack.url}",
            "type": "csrf",
        }
        assert browser.post("/updates/1/cancel").status_code == 403  # neither Origin nor Referer
        # From our own origin the write goes through to the route (there is no job 1).
        assert browser.post("/updates/1/cancel", headers=own).status_code == 404
        page = browser.get("/dashboard", headers={"Host": "evil.example"})
    assert page.status_code == 200 and "evil.example" not in page.text
    for response in (refused, page):
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "script-src 'self';" in response.headers["content-security-policy"]
