"""A DICOM Structured Report of the volumes, beside the DICOM SEG (``--dicom-seg``).

A SEG carries the label masks but no measurements; a PACS or a viewer that reads
measurement reports (TID 1500, "Imaging Measurement Report") shows each structure's
volume from ``<case>_sr.dcm``: a Comprehensive 3D SR whose every measurement group
references its segment in ``<case>_seg.dcm`` (segment number, SOP instance, source
series), names the structure by SNOMED CT with its laterality as a finding site, and
holds the volume in mm³ (UCUM ``mm3``) measured by subct on the written label map.

Structures without a volume (outside the field of view) get no group. The normative
percentiles are not in the SR: DICOM has no standard code for a percentile against a
normative cohort that a PACS would show as such; they are in ``volumes.csv`` and
``qc.json``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from subct import __version__
from subct.errors import SubctConfigError
from subct.io.dicom_seg import STRUCTURE_CODES
from subct.io.writers import atomic_output

LOG = logging.getLogger(__name__)

#: Series number of the SR: the source series' plus this (the SEG's is + 1000).
SR_SERIES_OFFSET = 2000


def _measurement_group(hd: Any, codes: Any, seg: Any, segment: Any, volume_mm3: float,
                       algorithm: Any) -> Any:
    """TID 1411 group: one segment's volume, its structure and side as finding site."""
    from pydicom.uid import generate_uid

    name = str(segment.SegmentLabel)
    base = name.removeprefix("Left-").removeprefix("Right-")
    side = ("Left" if name.startswith("Left-") else "Right" if name.startswith("Right-")
            else None)
    site = hd.sr.FindingSite(anatomic_location=getattr(codes.SCT, STRUCTURE_CODES[base]),
                             laterality=None if side is None else getattr(codes.SCT, side))
    referenced = hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
        segment_number=int(segment.SegmentNumber),
        source_series=hd.sr.SourceSeriesForSegmentation(
            seg.ReferencedSeriesSequence[0].SeriesInstanceUID))
    volume = hd.sr.Measurement(name=codes.SCT.Volume, value=round(float(volume_mm3), 1),
                               unit=codes.UCUM.CubicMillimeter)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=name),
        referenced_segment=referenced, finding_type=codes.SCT.AnatomicalStructure,
        finding_sites=[site], algorithm_id=algorithm, measurements=[volume])


def write_volume_sr(segmentation: str | Path, volumes_mm3: Mapping[str, float | None],
                    output: str | Path) -> Path:
    """Write the measurement report of ``volumes_mm3`` (structure name → mm³) for the
    segments of the DICOM SEG file ``segmentation`` to ``output`` (atomically).

    Raises:
        SubctConfigError: highdicom is not installed.
    """
    try:
        import highdicom as hd
        import pydicom
        from pydicom.sr.codedict import codes
        from pydicom.uid import generate_uid
    except ImportError as error:
        raise SubctConfigError("DICOM SR output needs highdicom: pip install "
                               "'subct[dicom]'") from error
    seg = pydicom.dcmread(segmentation)
    algorithm = hd.sr.AlgorithmIdentification(name="subct", version=__version__)
    groups = [_measurement_group(hd, codes, seg, segment, volume, algorithm)
              for segment in seg.SegmentSequence
              if (volume := volumes_mm3.get(str(segment.SegmentLabel))) is not None]
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="subct", model_name="subct ct-subcortical"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.LN.HeadCT, imaging_measurements=groups)
    with warnings.catch_warnings(record=True) as caught:  # library notes to the log
        warnings.simplefilter("always")
        document = hd.sr.Comprehensive3DSR(
            evidence=[seg], content=report, series_instance_uid=generate_uid(),
            series_number=int(seg.get("SeriesNumber", 0) or 0) - 1000 + SR_SERIES_OFFSET,
            sop_instance_uid=generate_uid(), instance_number=1, manufacturer="subct",
            is_complete=True, series_description="subct subcortical volumes")
    for note in caught:
        LOG.info("highdicom: %s", note.message)
    with atomic_output(output, suffix=".dcm") as temporary:
        document.save_as(temporary)
    return Path(output)
