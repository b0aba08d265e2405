"""``dj-ops-export-cogvideox --length NAME`` on what the op wrote with caption_format json: each
video's rendering of that name, one line each; a name the export lacks exits with the ones it
has."""

from __future__ import annotations

import os

import pytest
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.captioning.records import META_KEY
from tests.conftest import make_op, run_op
from tests.test_export_cogvideox import lines, run_export_command, write_jsonl
from tests.test_structured_op import USER_SCHEMA, USER_SCHEMA_TOKENS

pytest.importorskip("llguidance", reason="constrained decoding needs the structured extra")

V = SpecialTokens.video
LENGTHS = {"tiny": 6, "full": 60}


@pytest.fixture(scope="module")
def export(qwen3, videos, tmp_path_factory):
    """A jsonl export of json-mode rows: text rows (one video, two videos) and an error row."""
    samples = [{"text": f"{V} one", "videos": videos[:1]},
               {"text": f"{V}{V} two", "videos": videos[1:3]},
               {"text": f"{V} missing", "videos": ["/no/such/video.mp4"]}]
    op = make_op(qwen3, caption_format="json", json_schema=USER_SCHEMA, caption_lengths=LENGTHS,
                 sampling_params={"max_new_tokens": USER_SCHEMA_TOKENS},
                 keep_original_sample=False)
    rows = run_op(op, samples)
    return write_jsonl(tmp_path_factory.mktemp("export") / "captions.jsonl", rows), rows


@pytest.mark.parametrize("name", ["tiny", "full"])
def test_length_picks_the_rendering(export, tmp_path, name):
    source, rows = export
    proc = run_export_command(str(source), "-o", str(tmp_path), "--length", name)
    assert proc.returncode == 0, proc.stderr
    captioned = [r for r in rows if r[Fields.meta][META_KEY]["status"] == "captioned"]
    expected = [(video["captions_by_length"][name], os.path.abspath(path))
                for row in captioned
                for video, path in zip(row[Fields.meta][META_KEY]["videos"], row["videos"])]
    assert len(expected) == 3 and all(c for c, _ in expected)
    assert list(zip(lines(tmp_path / "prompt.txt"), lines(tmp_path / "videos.txt"))) == expected
    assert "error_record: 1" in proc.stdout


def test_a_missing_length_lists_the_available_ones(export, tmp_path):
    proc = run_export_command(str(export[0]), "-o", str(tmp_path), "--length", "medium")
    assert proc.returncode == 2
    assert "--length 'medium'" in proc.stderr and "['full', 'tiny']" in proc.stderr


def test_a_text_export_has_no_lengths(qwen3, videos, tmp_path):
    rows = run_op(make_op(qwen3, keep_original_sample=False), [{"text": V, "videos": videos[:1]}])
    source = write_jsonl(tmp_path / "text.jsonl", rows)
    proc = run_export_command(str(source), "-o", str(tmp_path / "d"), "--length", "short")
    assert proc.returncode == 2 and "caption_format: json" in proc.stderr
