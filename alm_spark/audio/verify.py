"""Checking one published shard before anyone trains on it: plain Python, no Spark.

A shard is read as a loader reads it, in one forward pass (``tarfile`` mode ``r|``: no
seek, so object stores stream it): every member must be a clip's audio or its facts,
every clip must have both (its JSON beside it in WebDataset shards; its line in the shard
manifest with NeMo's layout; its cut and its recording's JSON member right after it with
Lhotse Shar's), keys must be unique, and the duration the facts give must
equal what the audio header holds (``decode``: what decoding every frame gives). The
driver (:mod:`alm_spark.run.verify`) sums the shards and compares them with
``_metrics.json``.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

#: The audio members' extensions (``audio.codec``).
AUDIO_EXTENSIONS = ("flac", "wav")


@dataclass
class ShardCheck:
    """What checking one shard found.

    Attributes:
        shard: The shard's path relative to the output.
        clips: Clips with audio and facts.
        seconds: Their audio, by the headers.
        keys: Every clip key seen (for the run-wide uniqueness check).
        problems: One line per problem: ``<shard>: <member>: <what is wrong>``.
    """

    shard: str
    clips: int = 0
    seconds: float = 0.0
    keys: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def problem(self, member: str, what: str) -> None:
        """Note one problem of a member (or ``-`` for the shard as a whole)."""
        self.problems.append(f"{self.shard}: {member}: {what}")


@dataclass(frozen=True)
class _Audio:
    frames: int
    rate: int
    channels: int


def _audio_facts(data: bytes, decode: bool) -> _Audio:
    """The header's frames, rate and channels; ``decode``: every frame decoded too."""
    import soundfile

    with soundfile.SoundFile(io.BytesIO(data)) as sound:
        facts = _Audio(int(sound.frames), int(sound.samplerate), int(sound.channels))
        if decode:
            decoded = len(sound.read(dtype="int16"))
            if decoded != facts.frames:
                raise ValueError(f"the header says {facts.frames} frames, decoding gave {decoded}")
    return facts


def _split(name: str) -> tuple[str, str]:
    key, _, extension = name.partition(".")
    return key, extension


def check_shard(
    open_file: Callable[[str], BinaryIO],
    shard: str,
    manifest: str | None = None,
    decode: bool = False,
) -> ShardCheck:
    """Check one shard (and, with NeMo's layout, its manifest).

    Args:
        open_file: Opens a path relative to the output for binary reading.
        shard: The tar's path relative to the output.
        manifest: NeMo's layout: the shard manifest's path; None: WebDataset (facts in
            ``<key>.json`` members).
        decode: Decode every clip, not only its header.
    """
    shar = manifest is not None and manifest.endswith(".gz")
    members = _Members(ShardCheck(shard), decode, paired=shar)
    try:
        with open_file(shard) as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
            for member in tar:
                members.read(tar, member)
    except (OSError, tarfile.TarError, EOFError) as err:
        members.check.problem("-", f"cannot read the tar: {err}")
        return members.check
    facts = members.facts
    if manifest is not None:
        facts = _manifest_facts(members.check, open_file, manifest, shar)
    _match(members.check, members.audio, facts, manifest)
    if shar:
        recordings = {k: v for k, v in members.facts.items() if k not in members.unreadable}
        _match_recordings(members.check, members.audio, recordings)
    return members.check


class _Members:
    """A shard's members as read: audio header facts and JSON facts, by key."""

    def __init__(self, check: ShardCheck, decode: bool, paired: bool = False) -> None:
        """``paired``: Lhotse Shar's layout, each clip's JSON member right after its audio."""
        self.check, self._decode, self._paired = check, decode, paired
        self.audio: dict[str, tuple[str, _Audio]] = {}
        self.unreadable: set[str] = set()  # keys whose audio member is not readable audio
        self.facts: dict[str, dict[str, Any]] = {}
        self._previous: tuple[str, str] | None = None  # the last member's key and extension

    def read(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """Note one member: an audio clip's header facts or a clip's JSON."""
        key, extension = _split(member.name)
        previous, self._previous = self._previous, (key, extension)
        follows_audio = previous in {(key, audio) for audio in AUDIO_EXTENSIONS}
        if self._paired and extension == "json" and not follows_audio:
            self.check.problem(member.name, "not right after its audio member (Lhotse reads "
                               "each clip's audio, then its JSON)")  # fmt: skip
        if not member.isfile():
            self.check.problem(member.name, "not a regular file")
            return
        handle = tar.extractfile(member)
        data = handle.read() if handle is not None else b""
        if extension in AUDIO_EXTENSIONS:
            if key in self.audio:
                self.check.problem(member.name, "a second audio member for this key")
                return
            try:
                self.audio[key] = (member.name, _audio_facts(data, self._decode))
            except Exception as err:  # libsndfile: not audio, truncated, corrupt
                why = getattr(err, "error_string", None) or str(err).strip() or repr(err)
                self.check.problem(member.name, f"not readable audio: {why}")
                self.unreadable.add(key)
        elif extension == "json":
            if key in self.facts:
                self.check.problem(member.name, "a second JSON member for this key")
                return
            try:
                facts = json.loads(data)
            except ValueError as err:
                self.check.problem(member.name, f"not valid JSON: {err}")
                return
            if not isinstance(facts, dict):
                self.check.problem(member.name, "not a JSON object")
                return
            self.facts[key] = facts
        else:
            self.check.problem(member.name, "neither a clip's audio nor its JSON")


def _manifest_facts(
    check: ShardCheck, open_file: Callable[[str], BinaryIO], manifest: str, gzipped: bool
) -> dict[str, dict[str, Any]]:
    """A side file's lines by clip key.

    A NeMo manifest's by the member each names; Shar's cuts (``gzipped``) by their id.
    """
    facts: dict[str, dict[str, Any]] = {}
    try:
        with open_file(manifest) as handle:
            data = handle.read()
        lines = (gzip.decompress(data) if gzipped else data).decode("utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as err:
        check.problem(manifest, f"cannot read the shard's side file: {err}")
        return facts
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            key = str(record["id"]) if gzipped else _split(str(record["audio_filepath"]))[0]
        except (ValueError, KeyError, TypeError) as err:
            check.problem(f"{manifest}:{number}", f"not a manifest line: {err!r}")
            continue
        if key in facts:
            check.problem(f"{manifest}:{number}", f"a second line for {key}")
            continue
        facts[key] = record
    return facts


def _match(
    check: ShardCheck,
    audio: dict[str, tuple[str, _Audio]],
    facts: dict[str, dict[str, Any]],
    manifest: str | None,
) -> None:
    """Pair audio with facts; check keys and durations."""
    where = manifest or "the shard"
    for key in sorted(audio.keys() - facts.keys()):
        check.problem(audio[key][0], f"no facts for it in {where}")
    for key in sorted(facts.keys() - audio.keys()):
        named = f"{manifest} ({key})" if manifest else f"{key}.json"
        check.problem(named, f"no audio member for it in {check.shard}")
    for key in sorted(audio.keys() & facts.keys()):
        name, found = audio[key]
        meta = facts[key]
        check.keys.append(key)
        if manifest is None and meta.get("key") != key:
            check.problem(f"{key}.json", f"its key is {meta.get('key')!r}, not {key!r}")
        _check_duration(check, name, found, meta)
        check.clips += 1
        check.seconds += found.frames / found.rate


def _match_recordings(
    check: ShardCheck, audio: dict[str, tuple[str, _Audio]], recordings: dict[str, dict[str, Any]]
) -> None:
    """Lhotse Shar: pair each clip's audio with its recording's JSON member, and compare."""
    for key in sorted(audio.keys() - recordings.keys()):
        check.problem(audio[key][0], "no recording JSON for it in the shard")
    for key in sorted(recordings.keys() - audio.keys()):
        check.problem(f"{key}.json", f"no audio member for it in {check.shard}")
    for key in sorted(audio.keys() & recordings.keys()):
        found, recording = audio[key][1], recordings[key]
        if recording.get("id") != key:
            check.problem(f"{key}.json", f"its id is {recording.get('id')!r}, not {key!r}")
        said = (recording.get("num_samples"), recording.get("sampling_rate"))
        if said != (found.frames, found.rate):
            check.problem(
                f"{key}.json",
                f"it says {said[0]!r} samples at {said[1]!r} Hz, the audio holds "
                f"{found.frames} at {found.rate} Hz",
            )


def _check_duration(check: ShardCheck, name: str, found: _Audio, meta: dict[str, Any]) -> None:
    duration = meta.get("duration")
    if not isinstance(duration, (int, float)) or isinstance(duration, bool):
        check.problem(name, f"its duration is {duration!r}, not a number")
        return
    held = found.frames / found.rate
    if abs(held - duration) > 0.5 / found.rate:
        check.problem(name, f"the facts say {duration} s, the audio holds {held} s")
    rate = meta.get("sample_rate", found.rate)
    if rate != found.rate:
        check.problem(name, f"the facts say {rate} Hz, the audio is {found.rate} Hz")
    channels = meta.get("channels", found.channels)
    if channels != found.channels:
        check.problem(name, f"the facts say {channels} channel(s), the audio has {found.channels}")
