"""The HTML report: content, self-containment, the CLI that rebuilds it, a real browser."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from alm_spark import cli
from alm_spark.config import build_config
from alm_spark.report.figures import assemble_report
from alm_spark.report.html import column_chart, hbar_chart, render_report


def _metrics() -> dict[str, Any]:
    builder = build_config({}).builder
    rows = [
        {"metric": "window_duration", "key": "20", "v0": 7.0},
        {"metric": "window_speakers", "key": "3", "v0": 7.0},
        {"metric": "dominant_share", "key": "11", "v0": 7.0},
        {
            "metric": "sample_rate",
            "key": "16000",
            "v0": 3,
            "v1": 7200.0,
            "v2": 840.0,
            "v3": 60,
            "v4": 7,
        },
        {"metric": "sample_rate", "key": "8000", "v0": 1, "v1": 3600.0, "v2": 0, "v3": 0, "v4": 0},
        {"metric": "rejected", "key": "segments[].start: missing", "v0": 2.0},
        {"metric": "coverage", "key": "builder", "v0": 5000.0},
        {"metric": "coverage", "key": "filtered", "v0": 840.0},
    ]
    losses = {
        "lost_bw": 4, "dur_lost_bw": 40.0, "lost_sr": 30, "dur_lost_sr": 3600.0, "lost_spk": 1,
        "dur_lost_spk": 3.0, "lost_win": 9, "dur_lost_win": 50.0, "lost_no_spkr": 2,
        "dur_lost_no_spkr": 8.0, "lost_next_seg_bm": 3, "dur_lost_next_seg_bm": 9.0,
    }  # fmt: skip
    return {
        "producer": "alm_spark",
        "input_lines": 6, "blank_lines": 1, "entries_written": 4, "lines_rejected": 2,
        "internal_errors": 0, "entries_below_sample_rate": 1, "segments": 104,
        "audio_duration": 10800.0, "builder_windows": 60, "builder_windows_duration": 7200.0,
        "filtered_windows": 7, "filtered_pairs": 7, "filtered_dur": 840.0,
        "truncation_events": 12, "losses": losses,
        "run": {"run_id": "r1", "output_path": "file:/out", "wall_seconds": 9.5, "input_files": 2,
                "finished_at": "2026-11-24 08:00:00 UTC", "timings": {"process_and_write": 6.0}},
        "config": {"overlap": {"overlap_percentage": 50}},
        "report": assemble_report(rows, builder),
    }  # fmt: skip


def test_report_content() -> None:
    page = render_report(_metrics())
    for text in [
        "ALM windows report",
        "file:/out",
        "6 input lines from 2 file(s)",
        "3.00 h",  # audio in
        "0.23 h",  # filtered windows' coverage and filtered_dur
    ]:
        assert text in page, text
    assert "8% of the input speech (the segments' summed durations) lies inside" in page
    assert "segments[].start: missing" in page
    assert "16000 Hz" in page
    assert "8000 Hz" in page
    assert "process and write" in page
    assert "overlap.overlap_percentage" in page
    assert page.count("<svg") == 6  # overview, losses, 3 distributions, sample rates


def test_report_is_self_contained() -> None:
    page = render_report(_metrics()).lower()
    for forbidden in ["<script", "http://", "https://", "src=", "<link", "@import", "url("]:
        assert forbidden not in page


def test_report_without_figures_or_rejections() -> None:
    metrics = _metrics()
    metrics["report"] = {}
    metrics["lines_rejected"] = 0
    page = render_report(metrics)
    assert "None: every non-blank line became an output entry" in page
    assert page.count("<svg") == 2


def test_charts_escape_and_scale() -> None:
    svg = hbar_chart([("a <b>", 10.0, "10"), ("c", 5.0, "5")])
    assert "a &lt;b&gt;" in svg
    widths = [float(p.split('"')[0]) for p in svg.split('width="')[2:]]
    assert widths[0] == pytest.approx(2 * widths[1])
    assert column_chart(["x"], [0]).count("<rect") == 1


def test_report_command_rebuilds_the_page(tmp_path: Path, capsys) -> None:
    (tmp_path / "_metrics.json").write_text(json.dumps(_metrics()))
    assert cli.main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "_report.html").read_text() == render_report(_metrics())
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "_metrics.json").write_text("{}")
    assert cli.main(["report", str(tmp_path / "other")]) == 2
    assert "not written by alm_spark" in capsys.readouterr().err
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "_metrics.json").write_text(json.dumps({"producer": "alm_spark"}))
    assert cli.main(["report", str(tmp_path / "old")]) == 2
    assert "cannot build a report from it" in capsys.readouterr().err


def _png_pixels(path: Path) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Decode an 8-bit RGB or RGBA PNG (what Chromium writes) into pixels."""
    data = path.read_bytes()
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8
            assert color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = prev[x]
            corner = prev[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[x] = (line[x] + pred) & 0xFF
        rows.append(line)
        prev = line
    pixels = [
        (row[x], row[x + 1], row[x + 2])
        for row in rows[::4]
        for x in range(0, stride, channels * 4)
    ]
    return width, height, pixels


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (Debian package: chromium)")
    page = tmp_path / "_report.html"
    page.write_text(render_report(_metrics()))
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1240,1800",
         f"--screenshot={shot}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    width, height, pixels = _png_pixels(shot)
    assert (width, height) == (1240, 1800)
    colors = set(pixels)
    # The chart colours are on screen: bars were laid out and painted.
    for hex_color in ("#2f6db5", "#e07a2f", "#2a9d8f"):
        rgb = tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
        assert rgb in colors, hex_color
    assert (29, 53, 87) in colors  # the header band
