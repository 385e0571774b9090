"""The committed demo report is what today's code makes of its committed records, byte for byte:
every card and the comparison page rendered again equal the files checked in, and every record
reads back to its own content (upgraded to today's schema where it is older)."""

from __future__ import annotations

import json

import pytest

from hf_segcompare.report.results import RunResults, _upgraded

from .demo_report import DEMO, RUNS, render_demo


def test_every_committed_record_reads_back_to_its_content():
    """What the file holds (its boundary figures dropped: schema 7) reads back as it is, in its order;
    a field the schema did not have yet reads as absent (None or empty)."""
    for run in RUNS:
        path = DEMO / run / "results.json"
        written = _upgraded(json.loads(path.read_text()))
        read = RunResults.read(path).to_dict()
        assert {key: read[key] for key in written} == written and list(written) == [
            key for key in read if key in written], run
        assert all(read[key] in (None, []) for key in set(read) - set(written)), run


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return render_demo(tmp_path_factory.mktemp("demo"))


@pytest.mark.parametrize("run", RUNS)
def test_each_card_is_rendered_again_byte_for_byte(rendered, run):
    assert (rendered / run / "README.md").read_bytes() == (DEMO / run / "README.md").read_bytes()


def test_the_comparison_page_is_rendered_again_byte_for_byte(rendered):
    page = "comparison/comparison.md"
    assert (rendered / page).read_bytes() == (DEMO / page).read_bytes()


def test_evaluations_are_read_through_names_and_written_as_they_were():
    """`Scores` is the dict results.json holds (written unchanged), read through names; a record made
    from plain dicts holds `Scores` too, and replacing a figure leaves the original alone."""
    from hf_segcompare.report.results import Scores

    record = RunResults.read(DEMO / RUNS[0] / "results.json")
    final = record.final_eval
    assert isinstance(final, Scores) and all(isinstance(entry, Scores) for entry in record.evaluations)
    assert (final.mean_iou, final.class_iou("cat"), final.step) == (
        final["eval_mean_iou"], final["eval_iou_cat"], final["step"])
    assert final.class_boundary_iou("cat") is None and not final.has("boundary_iou")  # schema 7: dropped
    changed = final.with_figures(mean_iou=0.5)
    assert changed.mean_iou == 0.5 and final.mean_iou == record.mean_iou != 0.5
    rebuilt = RunResults(**{**record.to_dict(), "final_eval": dict(final)})
    assert isinstance(rebuilt.final_eval, Scores) and rebuilt.to_dict() == record.to_dict()


def test_the_train_block_is_typed_and_a_damaged_one_is_named(tmp_path):
    from hf_segcompare.errors import RecordError
    from hf_segcompare.report.results import TrainSummary

    path = DEMO / RUNS[0] / "results.json"
    record = RunResults.read(path)
    original = json.loads(path.read_text())["train"]
    assert isinstance(record.train, TrainSummary) and record.to_dict()["train"] == original
    assert (record.train.steps, record.train.epochs) == (original["steps"], original["epochs"])
    for damage in ({"stepz": 1}, {"steps": None}):  # a field no run writes; one every run writes, gone
        values = json.loads(path.read_text())
        values["train"] = {**{key: value for key, value in values["train"].items() if key not in damage}, **(
            {} if None in damage.values() else damage)}
        (tmp_path / "results.json").write_text(json.dumps(values))
        with pytest.raises(RecordError, match=r"results\.json: a block of it is not what a run writes"):
            RunResults.read(tmp_path / "results.json")
