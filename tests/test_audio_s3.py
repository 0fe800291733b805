"""Recordings on an S3-compatible server: the same clips as from local files, read in spans.

The server (moto, on 127.0.0.1, stopped by its PID) logs every request with the bytes it
sent, so the test knows what the executors fetched; they reach it through
``audio.storage_options`` alone (the driver's fsspec settings do not travel to them).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from alm_spark.audio.cut import READ_AHEAD
from alm_spark.config import load_config
from alm_spark.run.job import run_pipeline
from alm_spark.testing.audiogen import write_audio
from tests.conftest import write_jsonl
from tests.s3server import BUCKET, S3Server
from tests.test_audio_pipeline import WINDOW_SETTINGS, _entry

#: A long recording with windows in its first 30 s only, and a short one cut whole.
LONG, SHORT = ("long.flac", 240.0), ("short.flac", 40.0)


def _clips(out: Path) -> dict[str, bytes]:
    found = {}
    for shard in sorted((out / "_shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            found.update({m.name: tar.extractfile(m).read() for m in tar})  # type: ignore[union-attr]
    return found


def test_recordings_on_s3_give_a_local_runs_clips_reading_only_their_spans(
    spark: Any, s3: S3Server, tmp_path: Path
) -> None:
    import fsspec

    local = tmp_path / "audio"
    local.mkdir()
    for name, seconds in (LONG, SHORT):
        write_audio(local / name, seconds, 44100, 2, "flac")
        fsspec.filesystem("s3").put_file(  # readable anonymously, as a public dataset is
            str(local / name), f"{BUCKET}/audio/{name}", ACL="public-read"
        )
    entries = [_entry(LONG[0], 30.0), _entry(SHORT[0], 38.0), _entry("../secret.flac", 20.0)]
    manifest = write_jsonl(tmp_path / "m.jsonl", [json.dumps(e) for e in entries])
    options = json.dumps({"s3": {"endpoint_url": s3.url, "anon": True}})

    def run(out: str, *more: str) -> dict[str, Any]:
        overrides = [f"input.manifest_path={manifest}", f"output.path={tmp_path / out}",
                     "audio.enabled=true", *WINDOW_SETTINGS, *more]  # fmt: skip
        return run_pipeline(spark, load_config(None, overrides)).metrics["audio"]

    remote = run("remote", f"audio.root=s3a://{BUCKET}/audio", f"audio.storage_options={options}")
    here = run("local", f"audio.root={local}")
    assert _clips(tmp_path / "remote") == _clips(tmp_path / "local")
    assert remote["clips_written"] == here["clips_written"] == 7
    assert (remote["clips_lost"]["outside_root"], remote["files_read"]) == (2, 2)
    recorded = json.loads((tmp_path / "remote" / "_metrics.json").read_text())["config"]
    assert "storage_options" not in recorded["audio"]  # endpoints stay out of outputs
    # Each recording read once, in its windows' span: not the whole long file.
    size = (local / LONG[0]).stat().st_size
    sent, gets = s3.bytes_read(f"audio/{LONG[0]}")
    span = size * 30.0 / LONG[1]  # its windows: the first 30 s
    bound = span + 64 * 1024 + READ_AHEAD  # the span, the header, one block read ahead
    print(f"long recording: {sent:,} of {size:,} bytes read in {gets} GET(s); "
          f"{sent / bound:.2f} of the bound, {sent / size:.2f} of the file")  # fmt: skip
    assert sent <= bound
    assert sent < size / 2
    whole, _ = s3.bytes_read(f"audio/{SHORT[0]}")
    assert whole <= (local / SHORT[0]).stat().st_size + READ_AHEAD


def test_storage_options_are_checked_up_front() -> None:
    with pytest.raises(Exception, match=r"^audio.storage_options.s3.secret: credentials are"):
        load_config(None, ['audio.storage_options={s3: {secret: "x"}}'])
    with pytest.raises(Exception, match=r"^audio.storage_options.gs.token: credentials are"):
        load_config(None, ["audio.storage_options={gs: {token: ya29.abc}}"])  # anon is allowed
    config = load_config(None, ["audio.storage_options={S3: {endpoint_url: http://h, anon: true}}"])
    assert config.audio.storage_options == {"s3": {"endpoint_url": "http://h", "anon": True}}
    nested = load_config(None, [
        "audio.storage_options={s3a: {client_kwargs: {region_name: eu-west-1}, block_size: 4e6},"
        " gcs: {token: anon}, abfss: {account_name: acct}}"
    ]).audio.storage_options  # fmt: skip
    assert nested == {
        "s3": {"client_kwargs": {"region_name": "eu-west-1"}, "block_size": 4_000_000},
        "gs": {"token": "anon"}, "abfs": {"account_name": "acct"},
    }  # fmt: skip
    with pytest.raises(Exception, match=r"^audio.storage_options.s3.client_kwargs.aws_secret"):
        load_config(
            None, ["audio.storage_options={s3: {client_kwargs: {aws_secret_access_key: x}}}"]
        )
    with pytest.raises(Exception, match=r"^audio.storage_options.s3.block_size: expected a whole"):
        load_config(None, ["audio.storage_options={s3: {block_size: 4 MiB}}"])
