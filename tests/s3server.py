"""moto's S3 server with a request log the tests read: ``python -m tests.s3server HOST PORT LOG``.

moto's own log names requests but not the bytes they moved; this wraps its WSGI app and
writes one JSON line per request: method, path, Range header, status, response bytes.
Started by the tests on 127.0.0.1 and stopped by its PID.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The bucket every test uses.
BUCKET = "alm-test"
REPO = Path(__file__).resolve().parent.parent


class S3Server:
    """A running server: its URL and what its log says."""

    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log

    def requests(self) -> list[tuple[str, str, str, str, int]]:
        """Every request so far: method, path, Range header, status, bytes sent."""
        lines = self.log.read_text().splitlines()
        return [tuple(json.loads(line)) for line in lines]  # type: ignore[misc]

    def puts(self, prefix: str) -> Counter[str]:
        """How many PUTs each key under ``prefix`` received."""
        start = f"/{BUCKET}/{prefix}"
        return Counter(
            path.removeprefix(f"/{BUCKET}/")
            for method, path, *_ in self.requests()
            if method == "PUT" and path.startswith(start)
        )

    def bytes_read(self, key: str) -> tuple[int, int]:
        """Bytes the server sent for GETs of ``key``, and how many GETs."""
        gets = [sent for method, path, _, _, sent in self.requests()
                if method == "GET" and path == f"/{BUCKET}/{key}"]  # fmt: skip
        return sum(gets), len(gets)


@contextmanager
def s3_server(folder: Path) -> Iterator[S3Server]:
    """This server on a free loopback port, fsspec pointed at it, one bucket; stopped by PID."""
    import fsspec
    import s3fs

    from tests.cluster import LOOPBACK, free_port, stop_pid

    log = folder / "requests.jsonl"
    log.touch()
    port = free_port()
    with (folder / "server.out").open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.s3server", LOOPBACK, str(port), str(log)],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}"
    saved = dict(fsspec.config.conf.get("s3", {}))
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None, (folder / "server.out").read_text()[-2000:]
                assert time.time() < deadline, "the S3 server did not answer in 60 s"
                time.sleep(0.2)
        fsspec.config.conf["s3"] = {
            "endpoint_url": url, "key": "testing", "secret": "testing",
            "use_listings_cache": False,
        }  # fmt: skip
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        s3fs.S3FileSystem.clear_instance_cache()
        fsspec.filesystem("s3").mkdir(BUCKET)
        yield S3Server(url, log)
    finally:
        fsspec.config.conf["s3"] = saved
        s3fs.S3FileSystem.clear_instance_cache()
        stop_pid(server.pid)


def logged(app: Callable[..., Iterable[bytes]], log_path: str) -> Callable[..., Iterator[bytes]]:
    """``app`` writing one line per request into ``log_path``."""
    lock = threading.Lock()
    sink = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - lives as the server does

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        seen: dict[str, str] = {}

        def started(status: str, headers: Any, exc_info: Any = None) -> Any:
            seen["status"] = status.split(" ", 1)[0]
            return start_response(status, headers, exc_info)

        sent = 0
        for chunk in app(environ, started):
            sent += len(chunk)
            yield chunk
        line = [environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                environ.get("HTTP_RANGE", ""), seen.get("status", ""), sent]  # fmt: skip
        with lock:
            sink.write(json.dumps(line) + "\n")
            sink.flush()

    return serve


def main(host: str, port: str, log_path: str) -> None:
    """Serve until killed."""
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, int(port), logged(app, log_path), threaded=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
