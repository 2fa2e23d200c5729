"""URL sources (remote.py, streams.py, location.py): S3 (moto's server), a Range-capable web server,
and gs:// and az:// through their endpoints, all on 127.0.0.1. A source that cannot be read, or is
cut short on the way, is one line naming it, exit 2, and nothing sent or deleted."""

from __future__ import annotations

import gzip
import io
from typing import Any
from urllib.parse import unquote

import polars as pl
import pytest

from bulksync.config import sync_config
from bulksync.emulator import LoopsEmulator
from bulksync.errors import ConfigError, InputError
from bulksync.source.read import read_source
from tests.helpers import by_email, writes
from tests.source.servers import FileServer, S3Server

PEOPLE = 1000  # enough that half an export would look like a real, shorter one


def export(people: int = PEOPLE) -> bytes:
    rows = "".join(f"user{n}@example.com,First{n},{n:05d}\n" for n in range(people))
    return ("email,firstName,zip\n" + rows).encode()


def parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def error_of(source: str, **options: Any) -> str:
    with pytest.raises((InputError, ConfigError)) as info:
        read_source(source, **options)
    return str(info.value)


# -- object storage -------------------------------------------------------------------------------------


def test_a_csv_object_is_read_as_text(s3: S3Server) -> None:
    url = s3.put("people/contacts.csv", b"email,zip\nada@example.com,02134\n")

    source = read_source(url)

    assert source.frame.rows() == [(1, "ada@example.com", "02134")]
    assert str(source.path) == "s3://exports/people/contacts.csv"


def test_gzip_is_recognised_from_the_bytes_or_the_name(s3: S3Server) -> None:
    plain = b"email,zip\nada@example.com,02134\n"
    named = s3.put("contacts.csv.gz", gzip.compress(plain))
    unnamed = s3.put("contacts-gzipped.csv", gzip.compress(plain))  # what a Content-Encoding upload leaves

    assert read_source(named).frame.rows() == read_source(unnamed).frame.rows() == [(1, "ada@example.com", "02134")]


def test_jsonl_and_parquet_objects(s3: S3Server) -> None:
    jsonl = s3.put("contacts.jsonl", b'{"email": "ada@example.com", "seats": 4}\n')
    table = s3.put("contacts.parquet", parquet(pl.DataFrame({"email": ["grace@example.com"], "zip": ["02134"]})))

    assert read_source(jsonl).frame.rows() == [(1, "ada@example.com", "4")]
    assert read_source(jsonl).kinds == {"email": "string", "seats": "number"}
    assert read_source(table).frame.rows() == [(1, "grace@example.com", "02134")]


@pytest.mark.parametrize("name", ["contacts.csv", "contacts.parquet"])
def test_no_such_object_or_bucket_names_the_source(s3: S3Server, name: str) -> None:
    missing, no_bucket = f"s3://exports/missing/{name}", f"s3://no-such-bucket/{name}"

    assert error_of(missing) == f"{missing}: no such object (404); check the URL"
    assert error_of(no_bucket) == f"{no_bucket}: no such bucket (404); check the URL"


@pytest.mark.parametrize("name", ["contacts.csv", "contacts.parquet"])
def test_storage_options_stand_in_for_the_environment(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    data = export(3) if name.endswith(".csv") else parquet(pl.DataFrame({"email": ["a@x.io", "b@x.io", "c@x.io"]}))
    url = s3.put(name, data)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_ALLOW_HTTP")

    source = read_source(url, storage_options=[("aws_endpoint_url", s3.endpoint), ("aws_allow_http", "true")])

    assert source.frame.height == 3


def test_an_unknown_storage_option_is_named_and_its_value_never_shown(s3: S3Server) -> None:
    url = s3.put("contacts.csv", export(1))

    message = error_of(url, storage_options={"aws_secret_accesss_key": "hunter2-secret"})

    assert message.startswith(f"{url}: --storage-option aws_secret_accesss_key is not a setting obstore knows for s3://")
    assert "hunter2" not in message


def test_gs_and_az_objects_are_read_through_their_endpoints(web: FileServer) -> None:
    web.files["bucket/contacts.csv"] = b"email\ngs@example.com\n"
    web.files["container/contacts.csv"] = b"email\naz@example.com\n"
    base = web.url("").rstrip("/")

    google = read_source("gs://bucket/contacts.csv",
                         storage_options={"base_url": base, "skip_signature": "true", "allow_http": "true"})
    azure = read_source("az://container/contacts.csv", storage_options={
        "account_name": "devstoreaccount1", "endpoint": base, "skip_signature": "true", "allow_http": "true"})

    assert google.frame.rows() == [(1, "gs@example.com")]
    assert azure.frame.rows() == [(1, "az@example.com")]
    assert [unquote(path) for _, path, _ in web.requests] == ["/bucket/contacts.csv", "/container/contacts.csv"]


# -- web servers -------------------------------------------------------------------------------------


def test_a_web_source_and_a_parquet_one_read_in_ranges(web: FileServer) -> None:
    web.files["contacts.csv"] = export(3)
    web.files["contacts.parquet"] = parquet(pl.DataFrame({"email": ["ada@example.com"], "zip": ["02134"]}))

    assert read_source(web.url("contacts.csv")).frame["zip"].to_list() == ["00000", "00001", "00002"]
    assert read_source(web.url("contacts.parquet")).frame.rows() == [(1, "ada@example.com", "02134")]
    assert any(method == "GET" and path == "/contacts.parquet" and wanted for method, path, wanted in web.requests)


def test_a_download_cut_short_is_an_error_never_a_shorter_export(web: FileServer) -> None:
    web.files["contacts.csv"] = export()
    web.files["contacts.parquet"] = parquet(pl.DataFrame({"email": [f"u{n}@x.io" for n in range(PEOPLE)]}))

    cut = error_of(web.url("cut/contacts.csv"))
    cut_parquet = error_of(web.url("cut/contacts.parquet"))

    assert cut.startswith(f"{web.url('cut/contacts.csv')}: the download broke off (")
    assert cut.endswith("); nothing was sent: run again")
    assert cut_parquet.startswith(f"{web.url('cut/contacts.parquet')}: cannot be read (")


def test_refused_and_missing_web_sources(web: FileServer) -> None:
    web.files["contacts.csv"] = export(1)

    assert error_of(web.url("403/contacts.csv")) == (
        f"{web.url('403/contacts.csv')}: access denied (403); check the credentials: a presigned URL's own "
        "signature, or --storage-option"
    )
    assert error_of(web.url("gone.csv")) == f"{web.url('gone.csv')}: not found (404); check the URL"


def test_a_presigned_urls_signature_is_never_shown(web: FileServer) -> None:
    message = error_of(web.url("gone.csv?X-Amz-Credential=AKIA&X-Amz-Signature=topsecret"))

    assert message == f"{web.url('gone.csv')}?...: not found (404); check the URL"
    assert [path for _, path, _ in web.requests] == ["/gone.csv?X-Amz-Credential=AKIA&X-Amz-Signature=topsecret"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("http://example.com/contacts.csv", "refusing http://example.com/contacts.csv: contacts are only read over "
                                            "https (plain http is allowed for 127.0.0.1/localhost only)"),
        ("ftp://example.com/contacts.csv", "ftp://example.com/contacts.csv: a source URL starts with s3://, gs://, "
                                           "az:// or https://, not ftp://; for a local file give its path"),
        ("s3://exports", "s3://exports: name the object too, as in s3://bucket/path/contacts.csv"),
        ("s3://exports/contacts.xlsx", "s3://exports/contacts.xlsx: unknown source format '.xlsx'; name the file "
                                       ".csv, .tsv, .jsonl, .ndjson (optionally .gz) or .parquet, or pass --format"),
    ],
)
def test_urls_that_cannot_be_read_are_refused_before_any_request(source: str, message: str) -> None:
    assert error_of(source) == message


def test_a_url_source_is_kept_as_typed_and_is_no_file_to_clash_with() -> None:
    config = sync_config("s3://exports/contacts.csv", environ={}, storage_option=["aws_region=eu-west-1"],
                         format="csv")

    assert config.source == "s3://exports/contacts.csv"
    assert config.inputs()["SOURCE"] is None
    assert config.storage_options == (("aws_region", "eu-west-1"),)
    assert config.source_format == "csv"


# -- end to end: bulksync sync against the emulator ------------------------------------------------------


def test_sync_from_s3_sends_text_as_text(cli: Any, emulator: LoopsEmulator, s3: S3Server) -> None:
    url = s3.put("contacts.csv", export(3))

    result = cli("sync", url, "--state", "state.db")

    assert result.status == 0, result.err
    assert {email: contact["zip"] for email, contact in by_email(emulator).items()} == {
        "user0@example.com": "00000", "user1@example.com": "00001", "user2@example.com": "00002"
    }


def test_a_delete_missing_run_whose_download_breaks_off_leaves_every_contact(
    cli: Any, emulator: LoopsEmulator, web: FileServer
) -> None:
    web.files["contacts.csv"] = export()
    assert cli("sync", web.url("contacts.csv"), "--state", "state.db").status == 0
    since = len(emulator.request_log())

    cut = cli("sync", web.url("cut/contacts.csv"), "--state", "state.db", "--delete-missing", "--max-delete", "100%")
    gone = cli("sync", web.url("gone.csv"), "--state", "state.db", "--delete-missing", "--max-delete", "100%")

    assert (cut.status, gone.status) == (2, 2)
    assert cut.err.startswith(f"bulksync: error: {web.url('cut/contacts.csv')}: the download broke off (")
    assert gone.err == f"bulksync: error: {web.url('gone.csv')}: not found (404); check the URL\n"
    assert writes(emulator, since) == []
    assert len(emulator.contacts()) == PEOPLE


def test_a_delete_missing_run_whose_object_is_gone_leaves_every_contact(
    cli: Any, emulator: LoopsEmulator, s3: S3Server
) -> None:
    url = s3.put("nightly/contacts.parquet", parquet(pl.DataFrame({"email": [f"u{n}@x.io" for n in range(20)]})))
    assert cli("sync", url, "--state", "state.db").status == 0
    s3.client.delete_object(Bucket="exports", Key="nightly/contacts.parquet")
    since = len(emulator.request_log())

    result = cli("sync", url, "--state", "state.db", "--delete-missing", "--max-delete", "100%")

    assert result.status == 2
    assert result.err == f"bulksync: error: {url}: no such object (404); check the URL\n"
    assert writes(emulator, since) == []
    assert len(emulator.contacts()) == 20
