"""Manifest paths are untrusted: schemes come from an allow-list, ``audio.root`` confines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alm_spark.audio.cut import EntryRecording, WindowClip, cut_entry
from alm_spark.audio.paths import AudioPaths, RefusedPath
from alm_spark.config import AudioConfig, ConfigError
from alm_spark.testing.audiogen import write_audio

SOURCE = "file:/data/set/part.jsonl"


def _refusal(paths: AudioPaths, path: str, source: str = SOURCE) -> str:
    with pytest.raises(RefusedPath) as caught:
        paths.locate(path, source)
    return caught.value.reason


@pytest.mark.parametrize(
    "path",
    [
        "http://169.254.169.254/latest/meta-data/x.flac",
        "HTTPS://example.com/a.flac",
        "ftp://host/a.flac",
        "data:audio/flac;base64,AAAA",
        "simplecache::s3://bucket/a.flac",
        "a/b::http://169.254.169.254/x",
        "x/http://169.254.169.254/y.flac",  # joins to /dir/x/http://..., a bogus protocol
    ],
)
def test_schemes_outside_the_allow_list_are_refused_even_without_a_root(path: str) -> None:
    assert _refusal(AudioPaths(), path) == "scheme_not_allowed"


def test_the_allow_list_is_the_users() -> None:
    web = AudioPaths(schemes=("file", "https"))
    assert web.locate("https://cdn.example.com/a.flac", SOURCE) == "https://cdn.example.com/a.flac"
    assert _refusal(web, "s3://bucket/a.flac") == "scheme_not_allowed"
    assert AudioPaths(schemes=("s3",)).locate("s3a://b/a.flac", SOURCE) == "s3://b/a.flac"
    assert _refusal(AudioPaths(schemes=("s3",)), "a.flac") == "scheme_not_allowed"
    assert AudioPaths(schemes=("*",)).locate("http://h/a.flac", SOURCE) == "http://h/a.flac"


def test_a_local_root_confines_by_real_path_and_whole_segments(tmp_path: Path) -> None:
    root = tmp_path / "audio"
    (root / "a").mkdir(parents=True)
    (tmp_path / "audio2").mkdir()
    (tmp_path / "secret.flac").write_bytes(b"x")
    os.symlink(tmp_path / "secret.flac", root / "a" / "link.flac")
    paths = AudioPaths(str(root))
    assert paths.locate("a/b.flac", SOURCE) == f"{root}/a/b.flac"
    assert paths.locate(f"{root}/a/b.flac", SOURCE) == f"{root}/a/b.flac"
    assert paths.locate("a/../a/b.flac", SOURCE) == f"{root}/a/b.flac"  # resolved, inside
    for outside in (
        "../secret.flac",
        "a/../../secret.flac",
        str(tmp_path / "secret.flac"),
        f"file://{tmp_path}/secret.flac",
        f"{tmp_path}/audio2/x.flac",  # a string prefix of the root, not inside it
        "../audio2/x.flac",
        "a/link.flac",  # a link inside, pointing out
        "s3://bucket/audio/a.flac",
        "dbfs:/mnt/a.flac",
    ):
        assert _refusal(paths, outside) == "outside_root", outside
    assert AudioPaths(str(root), allow_outside_root=True).locate("../secret.flac", SOURCE) == (
        f"{root}/../secret.flac"
    )


def test_an_object_store_root_compares_literal_keys() -> None:
    paths = AudioPaths("s3a://bucket/audio/")
    assert paths.locate("a/b.flac", SOURCE) == "s3://bucket/audio/a/b.flac"
    assert paths.locate("s3://bucket/audio/c.flac", SOURCE) == "s3://bucket/audio/c.flac"
    for outside in (
        "../other/x.flac",  # a URL with .. is refused, not normalized
        "a/./b.flac",
        "a//b.flac",
        "s3://bucket/audio2/x.flac",
        "s3://other/audio/x.flac",
        "gs://bucket/audio/x.flac",
        "/etc/passwd",
    ):
        assert _refusal(paths, outside) == "outside_root", outside


def test_a_root_with_an_empty_host_keeps_it() -> None:
    """``hdfs:///data`` is the default namenode's /data; ``hdfs://data/...`` another host."""
    paths = AudioPaths("hdfs:///data/audio", schemes=("hdfs",))
    assert paths.locate("x.wav", SOURCE) == "hdfs:///data/audio/x.wav"
    assert paths.locate("hdfs:///data/audio/y.wav", SOURCE) == "hdfs:///data/audio/y.wav"
    assert _refusal(paths, "hdfs://data/audio/x.wav") == "outside_root"


def test_spellings_that_would_slip_past_a_check_are_refused_or_normalized() -> None:
    s3 = AudioPaths("s3://bucket/audio", schemes=("s3",))
    assert s3.locate("S3://bucket/audio/a.flac", SOURCE) == "s3://bucket/audio/a.flac"
    assert s3.locate("S3A://bucket/audio/a.flac", SOURCE) == "s3://bucket/audio/a.flac"
    assert s3.locate("a.flac", SOURCE) == "s3://bucket/audio/a.flac"  # relative: the root's
    assert _refusal(AudioPaths(), "a\x00b.flac") == "unreadable"
    assert _refusal(AudioPaths(), "a\nb.flac") == "unreadable"
    assert AudioPaths().locate("FILE:///x/a.flac", SOURCE) == "/x/a.flac"
    web = AudioPaths("https://h/audio", schemes=("https",))
    for encoded in ("%2E%2E/admin", ".%2e/admin", "a%2fb.flac", "a%5C..%5Cb.flac"):
        assert _refusal(web, encoded) == "outside_root", encoded
    assert AudioConfig(allowed_schemes="s3a,S3N,file").allowed_schemes == ("s3", "file")


def test_a_path_outside_the_root_is_never_opened(tmp_path: Path) -> None:
    write_audio(tmp_path / "outside.flac", 2.0, 16000, 1, "flac")
    (tmp_path / "root").mkdir()
    write_audio(tmp_path / "root" / "inside.flac", 2.0, 16000, 1, "flac")
    opened: list[str] = []

    def opener(url: str) -> object:
        opened.append(url)
        return open(url, "rb")

    windows = [WindowClip(0, 0, 0.0, 1.0, {"text": "w", "segments": []})]
    config = AudioConfig(enabled=True, root=str(tmp_path / "root"))
    source = f"file:{tmp_path}/m.jsonl"
    for line, path in enumerate(["../outside.flac", str(tmp_path / "outside.flac")], 1):
        (clip,) = cut_entry(windows, EntryRecording(source, line, path), config, opener).clips
        refusal = ("outside_root", f"{path!r} resolves outside audio.root")
        assert (clip.reason, clip.error) == refusal
    (web,) = cut_entry(windows, EntryRecording(source, 3, "http://h/x.flac"), config, opener).clips
    assert (web.reason, web.error) == (
        "scheme_not_allowed",
        "'http://h/x.flac': scheme http is not in audio.allowed_schemes",
    )
    assert opened == []
    (inside,) = cut_entry(windows, EntryRecording(source, 4, "inside.flac"), config, opener).clips
    assert (inside.reason, opened) == (None, [f"{tmp_path}/root/inside.flac"])
    unconfined = AudioConfig(enabled=True, root=str(tmp_path / "root"), allow_outside_root=True)
    (read,) = cut_entry(windows, EntryRecording(source, 5, "../outside.flac"), unconfined).clips
    assert read.reason is None


def test_confinement_settings_are_checked_up_front() -> None:
    assert AudioConfig(allowed_schemes="S3, file").allowed_schemes == ("s3", "file")
    with pytest.raises(ConfigError, match=r"^audio.allowed_schemes: 'ht tp' is not a URL"):
        AudioConfig(allowed_schemes=["ht tp"])
    with pytest.raises(ConfigError, match=r"^audio.allowed_schemes: name at least one"):
        AudioConfig(allowed_schemes=[])
    with pytest.raises(ConfigError, match=r"^audio.root: its scheme https is not in"):
        AudioConfig(root="https://cdn.example.com/audio")
    assert AudioConfig(root="https://h/a", allowed_schemes=["https"]).root == "https://h/a"
    with pytest.raises(ConfigError, match=r"^audio.allow_outside_root: expected true or false"):
        AudioConfig(allow_outside_root="yes")
