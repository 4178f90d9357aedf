"""The real head CTs the benchmarks can reach, loaded as subct volumes (HU).

* ``ge_tilted``: the GE HiSpeed series with gantry tilt and uneven spacing in
  ``../shared/data/ct/dicom_ge_tilted`` (read through dcm2niix by :mod:`subct.io`).
* ``invesalius_cranium``: the head CT ``Cranium.inv3`` shipped by Debian's
  ``invesalius-examples`` package (``apt-get install invesalius-examples``), a gzipped
  tar of ``main.plist`` (shape, spacing, dtype) and ``matrix.dat`` (raw int16 HU,
  108 × 256 × 256 stored slice, row, column; 0.957 × 0.957 × 1.5 mm). InVesalius stores
  axial slices with rows running posterior → anterior (the head holder is at row 0,
  the frontal sinus near row 200) and slices inferior → superior (skull base first, the
  vertex last), columns in the DICOM direction (towards the patient's left). So the
  voxel axes (column, row, slice) are L, A, S. Left/right cannot be checked from the
  image itself; the brain's asymmetries are too small to tell.

``headsq`` (VTK) is left out: its header records no orientation, and subct refuses to
guess one.
"""

from __future__ import annotations

import plistlib
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.labels.schemes import CANONICAL_NAMES
from subct.paths import shared_data_dir

INVESALIUS_CRANIUM = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")


def load_invesalius(path: Path = INVESALIUS_CRANIUM) -> Volume:
    """Read an InVesalius ``.inv3`` project's CT matrix as a Volume in HU (LAS axes)."""
    with tempfile.TemporaryDirectory() as scratch, tarfile.open(path, "r:gz") as archive:
        archive.extractall(scratch, filter="data")
        plist_path = next(Path(scratch).rglob("main.plist"))
        meta = plistlib.loads(plist_path.read_bytes())
        matrix = meta["matrix"]
        raw = np.fromfile(plist_path.parent / matrix["filename"], dtype=matrix["dtype"])
    slices, rows, columns = matrix["shape"]
    array = raw.reshape(slices, rows, columns).transpose(2, 1, 0)  # → column, row, slice
    dx, dy, dz = (float(s) for s in meta["spacing"])
    affine = np.diag([-dx, dy, dz, 1.0])  # column → Left (−x), row → Anterior, slice → Up
    return Volume(np.ascontiguousarray(array), affine, None, "InVesalius Cranium.inv3")


def real_cts() -> dict[str, Volume]:
    """Every real head CT available on this machine, by name."""
    volumes: dict[str, Volume] = {}
    ge = shared_data_dir() / "ct" / "dicom_ge_tilted"
    if ge.is_dir():
        volumes["ge_tilted"] = load_volume(ge, expect_ct=True)
    if INVESALIUS_CRANIUM.is_file():
        volumes["invesalius_cranium"] = load_invesalius()
    return volumes


def write_dicom_series(volume: Volume, folder: Path, description: str) -> Path:
    """Write ``volume`` (HU) as a plain CT Image Storage series, one file per voxel slice
    along its third axis (LPS patient coordinates from the affine), for end-to-end DICOM
    checks on a second geometry (untilted, even spacing). Returns ``folder``."""
    import datetime

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    lps = np.diag([-1.0, -1.0, 1.0]) @ volume.affine[:3, :4]
    spacing = np.linalg.norm(volume.affine[:3, :3], axis=0)
    row_direction = lps[:, 0] / spacing[0]      # along a row: voxel axis 0 (columns)
    column_direction = lps[:, 1] / spacing[1]   # down a column: voxel axis 1 (rows)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    today = datetime.date.today().strftime("%Y%m%d")
    array = np.asarray(volume.array)
    for k in range(array.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.Manufacturer = "CT", "subct benchmark export"
        ds.PatientName, ds.PatientID, ds.PatientSex, ds.PatientBirthDate = "Anonymous^Head", \
            "SUBCT0001", "O", ""
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, k + 1
        ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
        ds.SeriesDescription = description
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in lps @ np.array([0.0, 0.0, k, 1.0])]
        ds.ImageOrientationPatient = [float(v) for v in (*row_direction, *column_direction)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.PositionReferenceIndicator = ""
        ds.KVP = 120.0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(array.shape[1]), int(array.shape[0])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0.0, 1.0, "HU"
        ds.PixelData = np.ascontiguousarray(array[:, :, k].T.astype(np.int16)).tobytes()
        ds.save_as(folder / f"slice_{k:04d}.dcm", enforce_file_format=True)
    return folder


def structure_dice(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Dice of each canonical structure between two label maps of one grid (the "self-Dice"
    of two runs on the same scan); NaN where the structure is absent from both."""
    scores = {}
    for value, name in CANONICAL_NAMES.items():
        in_a, in_b = a == value, b == value
        total = int(in_a.sum()) + int(in_b.sum())
        scores[name] = 2.0 * float((in_a & in_b).sum()) / total if total else float("nan")
    return scores


def dice_summary(scores: dict[str, float]) -> tuple[float, str, float]:
    """Mean over the structures present, the worst structure and its Dice."""
    valid = {k: v for k, v in scores.items() if not np.isnan(v)}
    worst = min(valid, key=valid.__getitem__)
    return float(np.mean(list(valid.values()))), worst, valid[worst]
