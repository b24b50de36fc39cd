"""Where data lives: local paths and ``s3://`` URIs behind one pyarrow filesystem.

S3 credentials come from the usual AWS environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL``), an instance profile, or :class:`S3Settings` from the config.
``endpoint_url`` points at any S3-compatible store. Nothing here logs a credential.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from urllib.parse import urlparse

import pyarrow.fs as pafs


@dataclasses.dataclass(frozen=True)
class S3Settings:
    """S3 access. Unset fields fall back to the AWS environment / instance profile."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = dataclasses.field(default=None, repr=False)
    secret_access_key: str | None = dataclasses.field(default=None, repr=False)
    session_token: str | None = dataclasses.field(default=None, repr=False)
    #: retries of a failed S3 request (throttling, resets) before an error surfaces
    retry_attempts: int = 10

    def __post_init__(self):
        if self.retry_attempts < 0:
            raise ValueError(f"s3.retry_attempts must be >= 0, got {self.retry_attempts}")
        if self.endpoint_url and urlparse(self.endpoint_url).scheme not in ("http", "https"):
            raise ValueError(
                f"s3.endpoint_url must start with http:// or https://, got {self.endpoint_url!r}")

    def public(self) -> dict:
        """The settings without credentials, for logs and manifests."""
        return {"endpoint_url": self.endpoint_url, "region": self.region,
                "credentials": "from config" if self.access_key_id else "from environment",
                "retry_attempts": self.retry_attempts}


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def s3_filesystem(s3: S3Settings) -> pafs.S3FileSystem:
    endpoint = s3.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
        "AWS_ENDPOINT_URL")
    kwargs: dict = {
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=s3.retry_attempts),
    }
    region = s3.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
        kwargs["scheme"] = parsed.scheme
        kwargs.setdefault("region", "us-east-1")
    if s3.access_key_id:
        kwargs.update(access_key=s3.access_key_id, secret_key=s3.secret_access_key,
                      session_token=s3.session_token)
    return pafs.S3FileSystem(**kwargs)


def resolve(uri: str, s3: S3Settings | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the filesystem-relative path of a local path or ``s3://`` URI."""
    if is_s3(uri):
        parsed = urlparse(uri)
        return s3_filesystem(s3 or S3Settings()), (parsed.netloc + parsed.path).rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URI."""
    if is_s3(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def ensure_dir(fs: pafs.FileSystem, path: str) -> None:
    fs.create_dir(path, recursive=True)


def remove_dir(fs: pafs.FileSystem, path: str) -> None:
    """Delete a directory tree if it exists."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write a small file atomically where the filesystem allows (local: temp + rename)."""
    parent = posixpath.dirname(path) if not isinstance(fs, pafs.LocalFileSystem) \
        else os.path.dirname(path)
    ensure_dir(fs, parent)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = path + ".tmp"
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        os.replace(tmp, path)
    else:  # an S3 PUT is atomic
        with fs.open_output_stream(path) as f:
            f.write(data)


class StreamOut:
    """A file written in pieces, its size and sha256 kept as it goes; it appears under its
    name only when closed without an error (local: temp + rename; S3: the multipart upload
    completes on close)."""

    def __init__(self, fs: pafs.FileSystem, path: str):
        import hashlib

        local = isinstance(fs, pafs.LocalFileSystem)
        ensure_dir(fs, os.path.dirname(path) if local else posixpath.dirname(path))
        self.fs, self.path, self.local = fs, path, local
        self.tmp = f"{path}.tmp{os.getpid()}" if local else path
        self.f = fs.open_output_stream(self.tmp)
        self.digest = hashlib.sha256()
        self.bytes = 0

    def write(self, data) -> None:
        self.f.write(data)
        self.digest.update(data)
        self.bytes += len(data)

    def close(self) -> dict:
        self.f.close()
        if self.local:
            os.replace(self.tmp, self.path)
        return {"bytes": self.bytes, "sha256": self.digest.hexdigest()}

    def abort(self) -> None:
        try:
            self.f.close()
        finally:
            if self.local and os.path.exists(self.tmp):
                os.remove(self.tmp)


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def read_records(fs: pafs.FileSystem, path: str) -> list[dict]:
    """The rows of one Parquet or JSONL(.gz) file; a broken JSON line raises a ValueError
    naming the file and the line."""
    import gzip
    import io
    import json

    data = read_bytes(fs, path)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pylist()
    if data[:2] == b"\x1f\x8b":  # the stream may already have decompressed it
        data = gzip.decompress(data)
    rows = []
    for n, line in enumerate(data.decode("utf-8").splitlines()):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {n + 1} is not JSON: {exc}") from None
    return rows


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(fs: pafs.FileSystem, root: str, suffixes: tuple[str, ...]) -> list[str]:
    """Files under ``root`` (or ``root`` itself) whose names end with one of ``suffixes``,
    sorted, hidden and ``_``-prefixed names skipped (``_SUCCESS``, ``.tmp``)."""
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"input not found: {root}")
    if info.type == pafs.FileType.File:
        return [root]
    out = []
    for fi in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if fi.type != pafs.FileType.File:
            continue
        name = fi.base_name
        rel = fi.path[len(root):].lstrip("/")
        if any(p.startswith((".", "_")) for p in rel.split("/")):
            continue
        if name.lower().endswith(suffixes):
            out.append(fi.path)
    return sorted(out)
