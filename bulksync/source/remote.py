"""URL sources: object storage (``s3://``, ``gs://``, ``az://``) and web servers (``https://``).

CSV and JSONL bytes stream through obstore, the Python face of the Rust ``object_store`` crate that
polars reads cloud files with (Parquet goes through polars itself): the same settings, the same
environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_STORAGE_ACCOUNT_NAME``, ...), and ``--storage-option KEY=VALUE`` for the rest. A failure
names the source and never shows a storage option's value or a URL's query string.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from bulksync.errors import ConfigError, InputError
from bulksync.source.location import WEB_SCHEMES, Location

# obstore's HTTP client settings (ClientConfig); every other key is a setting of the store itself.
CLIENT_KEYS = frozenset({
    "allow_http", "allow_invalid_certificates", "connect_timeout", "default_content_type", "http1_only",
    "http2_keep_alive_interval", "http2_keep_alive_timeout", "http2_keep_alive_while_idle", "http2_only",
    "pool_idle_timeout", "pool_max_idle_per_host", "proxy_url", "proxy_ca_certificate", "proxy_excludes",
    "randomize_addresses", "read_timeout", "root_certificate", "timeout", "user_agent",
})
_PREFIXES = ("aws_", "google_", "azure_")
# Retries on 5xx and dropped connections (not on 4xx): a few, so that a wrong endpoint fails in seconds.
RETRY = {"max_retries": 5, "retry_timeout": timedelta(seconds=120),
         "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5), "base": 2}}
CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_ENDPOINT_URL for another S3 service)",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT)",
    "az": "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_SAS_KEY)",
}
_QUERY = re.compile(r"\?\S*")


def url_blocks(where: Location, block_bytes: int, storage_options: Mapping[str, str]) -> Iterator[bytes]:
    """The object's bytes in blocks of about ``block_bytes``; a download that stops short of the
    object's size, or fails, is an InputError naming the source."""
    obstore = _obstore(where)
    store, path = _store(where, storage_options)
    try:
        result = obstore.get(store, path)
        size = int(result.meta["size"])
        stream = iter(result.stream(min_chunk_size=block_bytes))
    except Exception as exc:
        raise unreadable(where, exc) from None
    read = 0
    while True:
        try:
            chunk = next(stream, None)
        except Exception as exc:
            raise unreadable(where, exc, read) from None
        if chunk is None:
            break
        read += len(chunk)
        yield bytes(chunk)
    if read < size:
        raise InputError(f"{where}: the download ended after {read:,} of {size:,} bytes; nothing was sent: run again")


def _obstore(where: Location) -> Any:
    try:
        import obstore  # noqa: PLC0415 (only URL sources need it)
    except ImportError:
        raise ConfigError(f"{where}: reading a {where.scheme}:// URL needs obstore: pip install 'bulksync[cloud]' "
                          "(a .parquet URL needs nothing more than polars)") from None
    return obstore


def _store(where: Location, storage_options: Mapping[str, str]) -> tuple[Any, str]:
    """The obstore store for the URL's bucket (or the whole URL, for https) and the object's path in it."""
    from obstore import store  # noqa: PLC0415

    from_url: Any = store.from_url  # its overloads want the settings typed per store; ours come as text
    client, config = split_options(storage_options)
    try:
        if where.scheme in WEB_SCHEMES:
            if config:
                raise ConfigError(f"--storage-option {sorted(config)[0]}: not a setting of an {where.scheme} "
                                  f"source (it takes {', '.join(sorted(CLIENT_KEYS))})")
            if where.scheme == "http":  # loopback only (checked by locate)
                client.setdefault("allow_http", "true")
            return from_url(where.given, client_options=client or None, retry_config=RETRY), ""
        parts = urlsplit(where.given)
        # None, not {}: empty settings would replace those the environment gives (AWS_ALLOW_HTTP, ...)
        store = from_url(f"{parts.scheme}://{parts.netloc}", config=config or None, client_options=client or None,
                         retry_config=RETRY)
        return store, parts.path.lstrip("/")
    except ConfigError:
        raise
    except Exception as exc:  # an unknown or malformed setting: name the key, never its value
        key = re.search(r"key:? '?([\w.-]+)'?", str(exc))
        named = f"--storage-option {key.group(1)}" if key else "a --storage-option"
        raise ConfigError(f"{where}: {named} is not a setting obstore knows for {where.scheme}:// "
                          f"({type(exc).__name__}); see the README's sources section") from None


def split_options(storage_options: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``--storage-option`` settings as (HTTP client settings, store settings): obstore takes them
    apart, where polars takes them in one dict. ``aws_allow_http`` is the client's ``allow_http``."""
    client: dict[str, str] = {}
    config: dict[str, str] = {}
    for key, value in storage_options.items():
        bare = next((key[len(p):] for p in _PREFIXES if key.startswith(p) and key[len(p):] in CLIENT_KEYS), key)
        if bare in CLIENT_KEYS:
            client[bare] = value
        else:
            config[key] = value
    return client, config


def unreadable(where: Location, exc: BaseException, read: int | None = None) -> InputError:
    """One line naming the source and what went wrong, from an obstore (or polars) error."""
    text = str(exc)
    first = _QUERY.sub("?...", text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
    reason = first.rsplit(" - ", 1)[-1].removeprefix("Server returned non-2xx status code: ")[:200]
    credentials = CREDENTIALS.get(where.scheme, "a presigned URL's own signature")
    if isinstance(exc, FileNotFoundError) or " 404 " in f" {text} ":
        missing = "bucket" if re.search(r"NoSuch(Bucket|Container)|ContainerNotFound", text) else "object"
        what = f"no such {missing}" if where.scheme not in WEB_SCHEMES else "not found"
        return InputError(f"{where}: {what} (404); check the URL")
    if type(exc).__name__ == "PermissionDeniedError" or " 403 " in f" {text} ":
        return InputError(f"{where}: access denied (403); check the credentials: {credentials}, or --storage-option")
    if type(exc).__name__ == "UnauthenticatedError" or " 401 " in f" {text} ":
        return InputError(f"{where}: not authenticated (401); set the credentials: {credentials}, "
                          "or --storage-option")
    if read is not None:
        after = f" after {read:,} bytes" if read else ""
        return InputError(f"{where}: the download broke off{after} ({reason}); nothing was sent: run again")
    return InputError(f"{where}: cannot be read ({reason}); check the URL, the network and the credentials: "
                      f"{credentials}")
