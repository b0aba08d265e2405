"""One Data-Juicer batch through the enhancement op: rows in, rows with their rewrites out.

Each row is planned (``enhancement/sources.py``: pass through, fail, or the captions to
rewrite), every caption of the batch is rewritten at once (the enhancer: store, backend,
gate), and each row gets its fields (the rewrites in the caption field's shape, the windows'
rewrites, json mode's renderings) and its record under the meta field. A row whose rewrites
failed is kept with its record, dropped or raised, per ``on_error``; every input row is
accounted for (a dropped row's record is still counted).
"""

from __future__ import annotations

from data_juicer.ops.base_op import convert_dict_list_to_list_dict
from loguru import logger

from dj_ops.enhancement.records import (
    STATUS_ERROR,
    Finishing,
    Rewrite,
    build_record,
    failure,
    with_record,
)
from dj_ops.enhancement.sources import (
    FAIL,
    PASS,
    RowPlan,
    Slot,
    never_captioned,
    plan_row,
    shaped,
)
from dj_ops.ops.enhancement_config import EnhanceConfig
from dj_ops.ops.enhancer import Enhancer
from dj_ops.ops.structured_config import lengths_field

WHOLE_ROW = Slot(-1, -1, -1, "")  # the slot of a failure of the whole row (no caption found)


class EnhancementError(RuntimeError):
    """Raised with ``on_error='raise'`` when a row's rewrites fail."""


def row_fields(config: EnhanceConfig, plan: RowPlan, rewrites: dict[tuple, Rewrite],
               finishing: Finishing) -> dict:
    """The fields the op writes on one row (``[]`` for a row without rewrites)."""
    layout = config.layout
    captions, windows = shaped(plan, lambda place: rewrites[place].text
                               if place in rewrites else None, "")
    fields = {layout.output_key: captions}
    if layout.windows:
        fields[layout.windows_key] = windows
    if config.structured is not None:
        blank = finishing.blank_structured()["captions_by_length"]
        lengths, _ = shaped(plan, lambda place: (rewrites[place].structured or {}).get(
            "captions_by_length") if place in rewrites else None, blank)
        fields[lengths_field(layout.output_key)] = lengths
    return fields


NOT_CAPTIONED = "__not_captioned__"  # the warning about rows the captioning op never saw


def warn_once(rows: list[dict], plans: list[RowPlan], layout, warned: set[str]) -> None:
    """The warnings of this process (each once, ``warned``): rows with videos the captioning op
    never ran on (they pass through: nothing to rewrite), and fields that may be its caption
    field while the captions are read from the text."""
    if NOT_CAPTIONED not in warned and any(never_captioned(row, layout) for row in rows):
        warned.add(NOT_CAPTIONED)
        logger.warning(
            "caption_enhancement_mapper: rows with videos carry no record of "
            "vlm_video_captioning_mapper and pass through unrewritten; run it before this op "
            "in the same recipe, or, reading an earlier export, keep __dj__meta__ in it "
            "(keep_stats_in_res_ds: true)")
    for name in sorted({f for plan in plans for f in plan.suspect_fields} - warned):
        warned.add(name)
        logger.warning(
            f"caption_enhancement_mapper reads captions from the text (caption_key unset), but "
            f"rows also hold the field {name!r} shaped like a caption field: if the captioning "
            f"op wrote its captions there (its caption_key), set caption_key: {name}, or the "
            "original texts after the video tokens are rewritten instead")


def enhance_rows(samples: dict[str, list], config: EnhanceConfig,
                 enhancer: Enhancer) -> tuple[dict, list[dict | None]]:
    """The output batch of one input batch, and per input row its record (None: passed
    through), the dropped rows' included. ``enhancer`` rewrites (set up)."""
    layout, run, finishing = config.layout, enhancer.run, enhancer.finishing
    rows = convert_dict_list_to_list_dict(samples) if samples else []
    plans = [plan_row(row, layout) for row in rows]
    warn_once(rows, plans, layout, enhancer.warned)
    done = enhancer.rewrite([slot.text for plan in plans for slot in plan.slots])
    out, records = [], []
    for row, plan in zip(rows, plans, strict=True):
        meta = row.get(layout.meta_key)
        if plan.kind == PASS:
            out.append({**row, **row_fields(config, plan, {}, finishing),
                        layout.meta_key: with_record(meta, None)})
            records.append(None)
            continue
        by_place = {slot.place: done[slot.text] for slot in plan.slots}
        entries = ([failure(*plan.error, finishing).entry(WHOLE_ROW)] if plan.kind == FAIL
                   else [by_place[slot.place].entry(slot) for slot in plan.slots])
        record = build_record(run, entries)
        records.append(record)
        if record["status"] == STATUS_ERROR and config.on_error != "keep":
            if config.on_error == "raise":
                raise EnhancementError("caption enhancement failed for a row: " + "; ".join(
                    f"{e['error_kind']}: {e['error_message']}" for e in entries
                    if e["error_kind"]))
            continue  # drop
        ok = {place: r for place, r in by_place.items() if not r.error_kind}
        out.append({**row, **row_fields(config, plan, ok, finishing),
                    layout.meta_key: with_record(meta, record)})
    keys = list(samples) + [k for k in (layout.meta_key, *config.output_fields)
                            if k not in samples]
    return {key: [row.get(key) for row in out] for key in keys}, records

