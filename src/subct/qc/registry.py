"""The registry of a case's QC checks: :data:`QC_CHECKS`, run in order.

A check is any function ``check(state) -> list[QcFlag]`` (the :class:`Check` protocol)
reading the finished :class:`~subct.inference.state.CaseState`; it records its
measurements in ``state.facts`` and may refuse the case by raising
:class:`~subct.errors.SubctInputError`. **A new QC check** is one function (in
:mod:`subct.qc.case_checks` or a file of its own in ``qc/``) and one line below; its flag
code goes in ``docs/segment.md``. The order is the order of the flags in the report.

The input gate (:mod:`subct.qc.gate`: orientation, size, "looks like a head CT") runs
before the network instead, in the steps that read and locate the input, because a
refused input should cost no network time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from subct.qc.case_checks import (
    basal_ganglia_coverage,
    field_of_view,
    hyperdense_lesions,
    intracranial_coverage,
    labels_on_bone,
    labels_outside_skull,
    left_right_asymmetry,
    no_tta_note,
    structure_intensities,
    tta_reliability,
    weak_structure_evidence,
)

if TYPE_CHECKING:
    from subct.inference.state import CaseState
    from subct.qc.checks import QcFlag


class Check(Protocol):
    """A QC check: the case state in, its flags out (may raise a refusal)."""

    def __call__(self, state: CaseState, /) -> list[QcFlag]: ...


#: Every QC check of ``subct segment``, in report order.
QC_CHECKS: tuple[Check, ...] = (
    tta_reliability,
    field_of_view,           # before any check that reads volumes: blanks unseen ones
    basal_ganglia_coverage,  # refusal
    intracranial_coverage,
    structure_intensities,
    hyperdense_lesions,
    left_right_asymmetry,
    no_tta_note,
    labels_on_bone,
    weak_structure_evidence,
    labels_outside_skull,
)
