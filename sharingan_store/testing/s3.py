"""A real S3-compatible server on loopback for tests and benchmarks (moto's server mode).

Nothing here mocks our own code: :func:`s3_server` starts moto's ``ThreadedMotoServer`` on
``127.0.0.1`` with a free port, creates a bucket through ``s3fs``, and yields the
``storage_options`` that ``open_store("s3://<bucket>/...", storage_options=...)`` needs.

Examples
--------
>>> with s3_server("demo-bucket") as server:  # doctest: +SKIP
...     store = open_store(server.url("attn-store"), storage_options=server.storage_options)
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Iterator

__all__ = ["S3Server", "free_port", "s3_server"]

_KEY = "testing"
_SECRET = "testing"
_REGION = "us-east-1"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    """A running loopback S3 server and the bucket made for the caller."""

    endpoint_url: str
    bucket: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def url(self, path: str = "") -> str:
        """``s3://<bucket>/<path>``."""
        return f"s3://{self.bucket}/{path.lstrip('/')}".rstrip("/")

    def filesystem(self) -> Any:
        """A fresh synchronous ``s3fs.S3FileSystem`` on this server (no instance cache)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)


@contextlib.contextmanager
def s3_server(bucket: str = "sharingan-test", *, host: str = "127.0.0.1", port: int | None = None) -> Iterator[S3Server]:
    """Start moto's ``ThreadedMotoServer`` on loopback, create ``bucket``, yield an :class:`S3Server`.

    The credentials are dummies moto accepts; ``AWS_*`` variables of the environment are
    not needed (nor read: the options are explicit). The server stops on exit.
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the loopback S3 server needs moto's server mode: pip install 'moto[server]'") from exc
    import s3fs

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per request
    port = port or free_port(host)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    endpoint = f"http://{host}:{port}"
    options: dict[str, Any] = {
        "endpoint_url": endpoint,
        "key": _KEY,
        "secret": _SECRET,
        "client_kwargs": {"region_name": _REGION},
    }
    # botocore may pick up a proxy from the environment: loopback must bypass it
    previous = os.environ.get("NO_PROXY")
    os.environ["NO_PROXY"] = ",".join(p for p in (previous, host, "localhost") if p)
    try:
        # us-east-1 takes no LocationConstraint (s3fs would send one from client_kwargs)
        bare = {k: v for k, v in options.items() if k != "client_kwargs"}
        s3fs.S3FileSystem(skip_instance_cache=True, **bare).mkdir(bucket)
        yield S3Server(endpoint_url=endpoint, bucket=bucket, storage_options=options)
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("NO_PROXY", None)
        else:
            os.environ["NO_PROXY"] = previous
