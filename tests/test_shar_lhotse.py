"""Lhotse Shar shards read by the real ``lhotse`` (its own lane: ``make test-lhotse``).

lhotse needs torch, which the default install leaves out; in the main suite this module
skips. The lane installs torch from this machine's local wheel, lhotse 1.33 and urllib3
(which lhotse imports without declaring it).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

lhotse = pytest.importorskip("lhotse", reason="the lhotse lane: make test-lhotse")


@pytest.mark.parametrize("channels", [1, 2])
def test_lhotse_reads_our_shar_cuts_supervisions_and_audio(
    spark: Any, tmp_path: Path, channels: int
) -> None:
    from lhotse.qa import validate_cut

    from alm_spark.config import load_config
    from alm_spark.run.job import run_pipeline
    from alm_spark.testing.audiogen import with_audio
    from alm_spark.testing.datagen import generate
    from tests.conftest import write_jsonl

    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [json.dumps(e) for e in with_audio(generate("demo", 2), tmp_path / "audio", tmp_path)],
    )
    out = tmp_path / "out"
    overrides = [
        f"input.manifest_path={manifest}", f"output.path={out}", "audio.enabled=true",
        "audio.format=shar", "audio.shard_max_clips=4", f"audio.channels={channels}",
    ]  # fmt: skip
    metrics = run_pipeline(spark, load_config(None, overrides)).metrics["audio"]
    shards = out / "_shards"
    clips: dict[str, bytes] = {}
    for tar_path in shards.glob("recording.*.tar"):
        with tarfile.open(tar_path) as tar:
            clips.update({m.name[: -len(".flac")]: tar.extractfile(m).read()  # type: ignore[union-attr]
                          for m in tar if m.name.endswith(".flac")})  # fmt: skip
    for cuts in (
        lhotse.CutSet.from_shar(in_dir=shards),
        lhotse.CutSet.from_shar(fields={
            "cuts": sorted(str(p) for p in shards.glob("cuts.*.jsonl.gz")),
            "recording": sorted(str(p) for p in shards.glob("recording.*.tar")),
        }),
    ):  # fmt: skip
        seen = 0
        for cut in cuts:
            samples, rate = sf.read(io.BytesIO(clips[cut.id]), dtype="float32", always_2d=True)
            audio = cut.load_audio()
            assert audio.shape == (channels, len(samples))
            assert np.allclose(audio, samples.T, atol=1e-6)
            assert (cut.sampling_rate, cut.num_channels) == (rate, channels)
            assert cut.supervisions, cut.id
            found = [(s.recording_id, s.start, s.duration) for s in cut.supervisions]
            bad = [f for f in found if not (f[0] == cut.id and 0 <= f[1] < cut.duration)]
            assert not bad, (cut.duration, bad)
            assert all(s.speaker and s.text is not None for s in cut.supervisions)
            assert cut.custom["audio_filepath"].endswith((".wav", ".flac"))
            validate_cut(cut, read_data=True)
            seen += 1
        assert seen == metrics["clips_written"] > 4
