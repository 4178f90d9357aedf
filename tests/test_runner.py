"""subct.runner: one outcome type and executor for every batch; subct.config: one style."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from subct.config import StrictConfig
from subct.errors import SubctInputError
from subct.inference.config import InferenceConfig
from subct.runner import CaseOutcome, guarded, run_cases


def _square_or_fail(value: int, folder: Path) -> CaseOutcome:
    def task() -> CaseOutcome:
        if value < 0:
            raise SubctInputError(folder / f"{value}.nii.gz", "negative case")
        if value == 0:
            raise ZeroDivisionError("division by zero")
        return CaseOutcome(f"case{value}", "done", details={"square": value * value})

    return guarded(f"case{value}", task, source=folder / f"{value}.nii.gz")


def test_run_cases_in_process_keeps_order_and_goes_on_past_failures(tmp_path: Path) -> None:
    seen: list[str] = []
    outcomes = run_cases(partial(_square_or_fail, folder=tmp_path), [3, -1, 0, 2],
                         ["case3", "case-1", "case0", "case2"],
                         on_outcome=lambda o: seen.append(o.case_id))
    assert [o.case_id for o in outcomes] == seen == ["case3", "case-1", "case0", "case2"]
    assert [o.status for o in outcomes] == ["done", "failed", "failed", "done"]
    assert outcomes[0].details == {"square": 9}
    # a user error keeps its one-line message; a bug is named as unexpected, with the file
    assert outcomes[1].error.endswith("negative case") and str(tmp_path) in outcomes[1].error
    assert "unexpected error: ZeroDivisionError" in outcomes[2].error
    assert str(tmp_path / "0.nii.gz") in outcomes[2].error


def test_run_cases_on_a_local_dask_cluster(tmp_path: Path) -> None:
    outcomes = run_cases(partial(_square_or_fail, folder=tmp_path), [2, -5, 4],
                         ["case2", "case-5", "case4"], local_workers=1)
    by_id = {o.case_id: o for o in outcomes}
    assert by_id["case2"].details["square"] == 4 and by_id["case4"].details["square"] == 16
    assert by_id["case-5"].status == "failed"


def test_unreachable_scheduler_is_a_clear_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import subct.runner

    monkeypatch.setattr(subct.runner, "SCHEDULER_CONNECT_TIMEOUT_S", 1.0)
    with pytest.raises(SubctInputError, match="cannot connect to Dask scheduler"):
        run_cases(partial(_square_or_fail, folder=Path(".")), [1], ["case1"],
                  scheduler="tcp://127.0.0.1:9")


def test_outcome_as_dict_is_plain_json(tmp_path: Path) -> None:
    outcome = CaseOutcome("a", "done", 1.5, source=tmp_path,
                          outputs={"labels": tmp_path / "a_labels.nii.gz"})
    record = outcome.as_dict()
    assert record["source"] == str(tmp_path)
    assert record["outputs"] == {"labels": str(tmp_path / "a_labels.nii.gz")}


def test_configs_reject_unknown_keys_and_validate_replacements() -> None:
    assert issubclass(InferenceConfig, StrictConfig)
    with pytest.raises(ValueError, match="overlapp"):
        InferenceConfig(overlapp=0.5)  # type: ignore[call-arg]
    config = InferenceConfig(tta=False)
    changed = config.replace(sliding_window_overlap=0.25)
    assert changed.sliding_window_overlap == 0.25 and not changed.tta
    assert config.sliding_window_overlap == 0.5  # the original is untouched
    with pytest.raises(ValueError, match="no_such_option"):
        config.replace(no_such_option=1)
    with pytest.raises(Exception, match="label scheme"):
        InferenceConfig(scheme="aseg")
