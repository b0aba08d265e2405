"""The op's per-batch SampleBuilder with synthetic candidates (no model): for any batch of
texts, chunks and videos, every input row is accounted for and every generated text keeps
the special-token layout of its original."""

from __future__ import annotations

import random
import re

from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens
from hypothesis import given, settings
from hypothesis import strategies as st

from dj_ops.captioning.generation import GenerationSettings, generation_record
from dj_ops.captioning.records import META_KEY, RunInfo
from dj_ops.captioning.requests import Candidate
from dj_ops.captioning.text import special_tokens_only
from dj_ops.ops.config import OutputPolicy, TextLayout
from dj_ops.ops.sample_builder import SampleBuilder

V, E, IMG = SpecialTokens.video, SpecialTokens.eoc, SpecialTokens.image
SPECIAL = list(get_special_tokens().values())
SPECIAL_PATTERN = "|".join(re.escape(t) for t in sorted(SPECIAL, key=len, reverse=True))
META = "__dj__meta__"
RUN = RunInfo("model", "transformers", generation_record(GenerationSettings(), None), "mode")

WORDS = st.text(alphabet="abc xyz.", max_size=8)
PIECE = st.lists(st.one_of(WORDS, st.just(V), st.just(IMG)), max_size=4).map("".join)
TEXT = st.tuples(st.lists(PIECE, min_size=1, max_size=4), st.booleans()).map(
    lambda t: E.join(t[0]) + (E if t[1] else ""))
# extra videos: 0 (one per token), -1 (one missing: a mismatch), or a bare list of 1-2 videos
VIDEO_PLAN = st.sampled_from([0, 0, 0, -1, "bare"])
CAPTION = st.lists(st.text(alphabet="abcxyz.", min_size=1, max_size=5), min_size=1,
                   max_size=8).map(" ".join)


@st.composite
def samples(draw):
    text, plan = draw(TEXT), draw(VIDEO_PLAN)
    count = text.count(V)
    if plan == "bare":
        text, count = text.replace(V, ""), draw(st.integers(1, 2))
    elif plan == -1 and count:
        count -= 1
    return {"text": text, "videos": [f"v{i}.mp4" for i in range(count)]}


def captions_in(text):
    return [m.strip() for m in
            re.findall(rf"{re.escape(V)}(.*?)(?={SPECIAL_PATTERN}|$)", text, flags=re.S)]


def expected_layout(sample):
    layout = special_tokens_only(sample["text"], SPECIAL)
    if V not in sample["text"]:
        layout += V * len(sample["videos"]) + E
    return layout


LAYOUT = TextLayout(meta_key=META, video_token=V, eoc_token=E, special_tokens=tuple(SPECIAL),
                    prompt="Describe.")


def builder_of(batch):
    return SampleBuilder({k: [s[k] for s in batch] for k in ("text", "videos")}, LAYOUT)


def build(batch, candidates, mode, keep_original):
    builder = builder_of(batch)
    for slot in builder.video_slots():
        builder.set_candidates(slot, candidates[slot.row][slot.video], [0.0, 0.5])
    policy = OutputPolicy(mode=mode, keep_original=keep_original)
    out, records = builder.build(RUN, policy, random.Random(0))
    rows = [dict(zip(out, values)) for values in zip(*out.values())]
    return records, rows


def check_generated(sample, row, candidates, index):
    """The layout is the original's; each caption is its video's candidate (as given: the
    quality gate, not the builder, decides about loops)."""
    assert special_tokens_only(row["text"], SPECIAL) == expected_layout(sample)
    kept = [[c.text for c in per_video] for per_video in candidates]
    captions = captions_in(row["text"])
    assert len(captions) == len(sample["videos"])
    for video, caption in enumerate(captions):
        assert caption in kept[video] if index is None else caption == kept[video][index]
    assert row[META][META_KEY]["status"] == "captioned"


@settings(max_examples=150, deadline=None)
@given(st.lists(samples(), min_size=1, max_size=5), st.integers(1, 3),
       st.sampled_from(["random_any", "similar_one_simhash", "all"]), st.booleans(), st.data())
def test_every_row_is_accounted_for_with_its_layout(batch, k, mode, keep_original, data):
    candidates = [[[Candidate(data.draw(CAPTION), 4, False) for _ in range(k)]
                   for _ in s["videos"]] for s in batch]
    records, rows = build(batch, candidates, mode, keep_original)
    new_per_row = k if mode == "all" else 1
    position = 0
    for sample, cands in zip(batch, candidates):
        # a sample without videos passes through, even if its text has video tokens
        mismatch = bool(sample["videos"]) and sample["text"].count(V) not in (
            0, len(sample["videos"]))
        if not sample["videos"] or mismatch:
            row = rows[position]
            assert (row["text"], row["videos"]) == (sample["text"], sample["videos"])
            record = row[META].get(META_KEY)
            assert (record is not None) == mismatch
            if mismatch:
                assert record["videos"][0]["error_kind"] == "token_video_mismatch"
            position += 1
            continue
        if keep_original:
            assert rows[position]["text"] == sample["text"]
            position += 1
        for s in range(new_per_row):
            check_generated(sample, rows[position], cands, s if mode == "all" else None)
            assert rows[position]["videos"] == sample["videos"]
            position += 1
    assert position == len(rows)
    assert len(records) == len(batch)


def test_the_builder_writes_the_candidate_the_gate_kept():
    """The repetition decision is the gate's (with the user's thresholds): the builder writes
    the candidate as given, a loop the gate cut with its flag."""
    batch = [{"text": f"{V} original {E}", "videos": ["a.mp4"]}]
    looping = Candidate("A dog runs. A dog runs. A dog runs. A dog", 12, True)
    trimmed = Candidate("A dog runs.", 12, True, repetition_trimmed=True)
    _, rows = build(batch, [[[looping]]], "random_any", keep_original=False)
    assert rows[0]["text"] == f"{V} {looping.text} {E}"
    assert rows[0][META][META_KEY]["videos"][0]["repetition_trimmed"] is False
    _, rows = build(batch, [[[trimmed]]], "random_any", keep_original=False)
    assert rows[0]["text"] == f"{V} A dog runs. {E}"
    video = rows[0][META][META_KEY]["videos"][0]
    assert (video["repetition_trimmed"], video["hit_token_limit"], video["generated_tokens"]) == (
        True, True, 12)


def test_dropped_rows_are_still_counted():
    batch = [{"text": f"{V}{V} one video {E}", "videos": ["a.mp4"]},
             {"text": f"{V} ok {E}", "videos": ["b.mp4"]}]
    builder = builder_of(batch)
    for slot in builder.video_slots():
        builder.set_candidates(slot, [Candidate("a cat", 2, False)], [0.0])
    out, records = builder.build(RUN, OutputPolicy(keep_original=False, on_error="drop"),
                                 random.Random(0))
    assert out["videos"] == [["b.mp4"]]
    assert [r["status"] for r in records] == ["error", "captioned"]


SCHEMA = {"type": "object", "properties": {"what": {"type": "string"}}, "required": ["what"],
          "additionalProperties": False}


def build_json(batch, candidates, mode):
    from dj_ops.ops.structured_config import parse_structured

    structured = parse_structured("json", SCHEMA, None)
    builder = SampleBuilder({k: [s[k] for s in batch] for k in ("text", "videos")}, LAYOUT,
                            structured)
    for slot in builder.video_slots():
        builder.set_candidates(slot, candidates[slot.row][slot.video], [0.0])
    policy = OutputPolicy(mode=mode, keep_original=False)
    out, records = builder.build(RUN, policy, random.Random(0))
    return records, [dict(zip(out, values)) for values in zip(*out.values())]


VALID = [Candidate('{"what":"a dog"}', 7, False), Candidate('{"what":"a cat"}', 7, False)]
CUT = Candidate('{"what":"a bi', 5, True)


def test_cut_documents_are_left_out_and_recorded_the_valid_ones_delivered():
    """Mode 'all': candidate 1 is cut; candidates 0 and 2 make the rows, the cut one is listed
    with its token facts in every kept record."""
    batch = [{"text": f"{V} clip {E}", "videos": ["a.mp4"]}]
    records, rows = build_json(batch, [[[VALID[0], CUT, VALID[1]]]], "all")
    assert [row[META][META_KEY]["candidate_index"] for row in rows] == [0, 2]
    assert [captions_in(row["text"]) for row in rows] == [["What: a dog."], ["What: a cat."]]
    for row in rows:
        (video,) = row[META][META_KEY]["videos"]
        assert list(video["dropped_candidates"]) == [
            "candidate 1: invalid_json: the structured caption not strict JSON: Unterminated "
            "string starting at: line 1 column 9 (char 8) (5 tokens, token limit hit)"]


def test_all_keeps_the_indices_usable_for_every_video_of_a_sample():
    batch = [{"text": f"{V} one {E}{V} two {E}", "videos": ["a.mp4", "b.mp4"]}]
    records, rows = build_json(batch, [[[VALID[0], CUT], [CUT, VALID[1]]]], "all")
    assert records[0]["status"] == "error"  # no index is a document for both videos
    assert records[0]["videos"][0]["error_message"] == (
        "no candidate index is usable for every video of the sample")
    records, rows = build_json(batch, [[[VALID[0], CUT], [VALID[1], VALID[0]]]], "all")
    assert len(rows) == 1 and captions_in(rows[0]["text"]) == ["What: a dog.", "What: a cat."]
    assert [len(v["dropped_candidates"]) for v in records[0]["videos"]] == [1, 1]


def test_an_error_record_keeps_the_token_facts_of_what_was_generated():
    batch = [{"text": f"{V} clip {E}", "videos": ["a.mp4"]}]
    for mode in ("all", "random_any"):
        records, _ = build_json(batch, [[[CUT, CUT]]], mode)
        (video,) = records[0]["videos"]
        assert (records[0]["status"], video["error_kind"]) == ("error", "invalid_json")
        assert (video["generated_tokens"], video["hit_token_limit"]) == (5, True)
        assert len(video["dropped_candidates"]) == 2
