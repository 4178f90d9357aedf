"""Export training data in nnU-Net v2's raw layout (``subct export-nnunet``).

nnU-Net v2 (``nnUNetv2_plan_and_preprocess -d ID``) expects, under ``$nnUNet_raw``::

    DatasetXXX_Name/
      dataset.json        channel_names, labels (background 0, consecutive), numTraining,
                          file_ending
      imagesTr/<case>_0000.nii.gz   the CT (channel 0), here in Hounsfield units
      labelsTr/<case>.nii.gz        class indices 0..C on the image's grid

Two sources:

* **synthetic** CT generated from whole-head label maps (:mod:`subct.synth`, CT mode),
  so nnU-Net can be trained on the same synthetic data as ``subct train``; the
  generator's HU image (before windowing) is written, so nnU-Net's own CT
  normalisation sees bone and air as in a real scan.
* **paired** CT + label-map folders (matched by case name); label maps in FreeSurfer
  IDs (or any tool :func:`subct.labels.convert.convert_to_canonical` knows) are converted to
  the scheme's class indices.

Besides the nnU-Net files, ``splits.json`` (subct's train/val lists, read by
``subct train``) and ``splits_final.json`` (nnU-Net's fold list; copy it into
``$nnUNet_preprocessed/DatasetXXX_Name/`` to use this split) are written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from subct.config import StrictConfig
from subct.dataset.splits import random_validation_split, write_splits
from subct.errors import SubctConfigError, SubctInputError
from subct.image.volume import Volume
from subct.io.files import case_name, iter_volume_files
from subct.io.readers import load_volume
from subct.io.writers import atomic_write_text, save_volume
from subct.labels.convert import FREESURFER_NAME_TO_ID, convert_to_canonical
from subct.labels.schemes import (
    labels_to_indices,
    merge_left_right,
    remap,
    scheme_labels,
)
from subct.labels.schemes import scheme_names as _scheme_names
from subct.model.plan import DEFAULT_HU_WINDOW, require_same
from subct.synth import LabelBank, SynthConfig, SynthGenerator

REQUIRED_DATASET_KEYS = ("channel_names", "labels", "numTraining", "file_ending")


class NnunetExportConfig(StrictConfig):
    """Where and how to write the dataset.

    Attributes:
        output_root: the ``nnUNet_raw`` folder; the dataset goes into
            ``DatasetXXX_<name>`` inside it.
        dataset_id: nnU-Net dataset number (1..999).
        dataset_name: name part of the folder (letters, digits, ``_``/``-``).
        label_scheme: ``canonical`` (17), ``merged`` (9) or ``paper7`` (7 structures).
        validation_fraction: share of cases listed as validation in the splits.
        seed: seed of the split and of the synthetic generator.
        hu_window: HU window the synthetic [0, 1] images are mapped back through.
        synth: extra :class:`subct.synth.SynthConfig` values (e.g. ``output_shape``).
    """

    output_root: Path
    dataset_id: int
    dataset_name: str
    label_scheme: str = "canonical"
    validation_fraction: float = 0.2
    seed: int = 0
    hu_window: tuple[float, float] = DEFAULT_HU_WINDOW
    synth: dict[str, Any] = Field(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        if not 1 <= self.dataset_id <= 999:
            raise SubctConfigError(f"nnU-Net dataset id must be 1..999, got {self.dataset_id}")
        if not self.dataset_name or not all(c.isalnum() or c in "_-" for c in self.dataset_name):
            raise SubctConfigError(f"dataset name {self.dataset_name!r}: use letters, digits, _ -")
        scheme_labels(self.label_scheme)  # raises for unknown schemes

    @property
    def dataset_dir(self) -> Path:
        """``<output_root>/DatasetXXX_<name>``."""
        return Path(self.output_root) / f"Dataset{self.dataset_id:03d}_{self.dataset_name}"


def dataset_json(scheme: str, num_training: int, name: str, description: str) -> dict[str, Any]:
    """nnU-Net v2 ``dataset.json`` for a one-channel CT dataset in ``scheme``.

    ``labels`` maps names to consecutive class indices with background 0, as nnU-Net
    requires; ``freesurfer_ids_by_class`` (ignored by nnU-Net) records the FreeSurfer
    ID of each class so predictions can be converted back (``subct evaluate``).
    """
    names = _scheme_names(scheme)
    labels = {"background": 0}
    freesurfer = {"0": 0}
    for index, value in enumerate(scheme_labels(scheme), start=1):
        labels[names[value]] = index
        freesurfer[str(index)] = value
    return {
        "name": name,
        "description": description,
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": num_training,
        "file_ending": ".nii.gz",
        "label_scheme": scheme,
        "freesurfer_ids_by_class": freesurfer,
    }


def _write_dataset_files(config: NnunetExportConfig, cases: list[str], description: str) -> None:
    folder = config.dataset_dir
    atomic_write_text(folder / "dataset.json", json.dumps(dataset_json(
        config.label_scheme, len(cases), config.dataset_name, description), indent=2) + "\n")
    write_splits(folder, random_validation_split(cases, config.validation_fraction,
                                                 config.seed))


def _save_case(config: NnunetExportConfig, case: str, hu: Volume, indices: np.ndarray) -> None:
    folder = config.dataset_dir
    save_volume(hu, folder / "imagesTr" / f"{case}_0000.nii.gz", dtype=np.int16)
    save_volume(Volume(indices.astype(np.uint8), hu.affine.copy()),
                folder / "labelsTr" / f"{case}.nii.gz")


def export_synthetic(label_maps: Sequence[str | Path], samples_per_map: int,
                     config: NnunetExportConfig) -> Path:
    """Write ``samples_per_map`` synthetic CTs per label map; return the dataset folder."""

    if samples_per_map < 1:
        raise SubctConfigError("samples_per_map must be at least 1")
    synth_values = {"mode": "ct", "target_scheme": config.label_scheme} | dict(config.synth)
    ct = dict(synth_values.get("ct") or {})
    if "window" in ct:  # the images are mapped back to HU through hu_window: one window
        require_same("synth.ct.window", ct["window"], "hu_window", config.hu_window)
    synth_values["ct"] = ct | {"window": list(config.hu_window)}
    synth_config = SynthConfig.from_dict(synth_values)
    low, high = config.hu_window
    cases: list[str] = []
    for map_index, path in enumerate(label_maps):
        bank = LabelBank([path])
        generator = SynthGenerator(bank, synth_config, seed=config.seed * 100_003 + map_index)
        for sample_index in range(samples_per_map):
            sample = generator.sample()
            if sample.hu is not None:  # full HU range (bone, air) before windowing
                hu_values = np.asarray(sample.hu.numpy() if hasattr(sample.hu, "numpy")
                                       else sample.hu, dtype=np.float32)
            else:
                hu_values = sample.image[0].numpy().astype(np.float32) * (high - low) + low
            hu = np.rint(hu_values).clip(-1024, 3071).astype(np.int16)
            case = f"synth_{case_name(path)}_{sample_index:03d}"
            _save_case(config, case, Volume(hu, np.asarray(sample.affine, dtype=np.float64)),
                       sample.target.numpy())
            cases.append(case)
    _write_dataset_files(config, cases, f"synthetic head CT from {len(label_maps)} label maps "
                                        "(subct.synth, CT mode)")
    return config.dataset_dir


def export_pairs(images_dir: str | Path, labels_dir: str | Path, config: NnunetExportConfig,
                 label_tool: str = "freesurfer") -> tuple[Path, list[str]]:
    """Copy CT + label-map pairs (matched by case name) into the nnU-Net layout.

    Label maps are converted to the scheme's class indices; a label map on a grid that
    differs from its CT's is an error for that case. Failing cases are skipped and
    returned (with the reason) so a batch goes on.

    Returns:
        The dataset folder and one ``"case: problem"`` line per failed case.
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise SubctInputError(folder, "not a folder")
    labels = {case_name(path): path for path in iter_volume_files(labels_dir)}
    cases: list[str] = []
    failures: list[str] = []
    for image_path in iter_volume_files(images_dir):
        case = case_name(image_path)
        if case.endswith("_0000"):
            case = case[:-5]
        label_path = labels.get(case)
        if label_path is None:
            failures.append(f"{case}: no label map named {case} in {labels_dir}")
            continue
        try:
            ct = load_volume(image_path, expect_ct=True)
            label_volume = load_volume(label_path)
            if not ct.geometry.same_grid(label_volume.geometry):
                raise SubctInputError(label_path, f"grid differs from its CT {image_path}")
            canonical = convert_to_canonical(np.asarray(label_volume.array).astype(np.int32),
                                             label_tool)
            if config.label_scheme == "merged":
                canonical = merge_left_right(canonical)
            indices = labels_to_indices(canonical, config.label_scheme)
            _save_case(config, case, Volume(np.asarray(ct.array), ct.affine.copy()), indices)
            cases.append(case)
        except SubctInputError as error:
            failures.append(f"{case}: {error}")
    if not cases:
        raise SubctInputError(images_dir, "no case could be exported: " + "; ".join(failures))
    _write_dataset_files(config, cases, f"CT + labels exported from {images_dir}")
    return config.dataset_dir, failures


def check_nnunet_raw(dataset_dir: str | Path) -> list[str]:
    """Problems with an nnU-Net v2 raw dataset (empty list: usable).

    Checks what ``nnUNetv2_plan_and_preprocess --verify_dataset_integrity`` checks
    first: required ``dataset.json`` keys, background 0 and consecutive label values,
    ``numTraining`` equal to the number of label files, one ``_0000`` image per label
    file and per channel, file ending, and label values within the declared labels.
    """
    folder = Path(dataset_dir)
    problems: list[str] = []
    try:
        meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return [f"dataset.json unreadable: {error}"]
    for key in REQUIRED_DATASET_KEYS:
        if key not in meta:
            problems.append(f"dataset.json lacks {key!r}")
    if problems:
        return problems
    values = sorted(int(v) for v in meta["labels"].values())
    if meta["labels"].get("background") != 0:
        problems.append("labels must contain background = 0")
    if values != list(range(len(values))):
        problems.append(f"label values {values} are not consecutive from 0")
    ending = meta["file_ending"]
    label_files = sorted((folder / "labelsTr").glob(f"*{ending}"))
    if len(label_files) != int(meta["numTraining"]):
        problems.append(f"numTraining {meta['numTraining']} but {len(label_files)} label files")
    for label_file in label_files:
        case = label_file.name[: -len(ending)]
        for channel in meta["channel_names"]:
            image = folder / "imagesTr" / f"{case}_{int(channel):04d}{ending}"
            if not image.is_file():
                problems.append(f"missing image {image.name}")
        found = np.unique(np.asarray(load_volume(label_file).array))
        if found.min() < 0 or found.max() > values[-1]:
            problems.append(f"{label_file.name} has values {found.tolist()} outside the labels")
    return problems


def class_to_freesurfer(meta: dict[str, Any]) -> dict[int, int]:
    """Class index → FreeSurfer ID from an nnU-Net ``dataset.json``.

    Uses ``freesurfer_ids_by_class`` when present (written by subct), else the label
    names (FreeSurfer names such as ``Left-Thalamus``, case-insensitive).
    """

    if "freesurfer_ids_by_class" in meta:
        return {int(k): int(v) for k, v in meta["freesurfer_ids_by_class"].items()}
    mapping = {0: 0}
    for name, index in meta.get("labels", {}).items():
        key = str(name).strip().lower()
        if key in FREESURFER_NAME_TO_ID and isinstance(index, int):
            mapping[index] = FREESURFER_NAME_TO_ID[key]
    return mapping


def nnunet_predictions_to_labels(predictions_dir: str | Path, dataset_json_path: str | Path,
                                 output_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Convert nnU-Net predictions (class indices) to FreeSurfer-ID label maps.

    The results can be scored with ``subct evaluate OUTPUT_DIR REFERENCE_DIR``. Files
    are written atomically; a failing case is reported and the others go on.

    Returns:
        The written files and one ``"file: problem"`` line per failure.
    """

    predictions_dir, output_dir = Path(predictions_dir), Path(output_dir)
    if not predictions_dir.is_dir():
        raise SubctInputError(predictions_dir, "not a folder")
    if predictions_dir.resolve() == output_dir.resolve():
        raise SubctInputError(output_dir, "refusing to overwrite the nnU-Net predictions")
    try:
        meta = json.loads(Path(dataset_json_path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise SubctInputError(dataset_json_path, f"cannot read dataset.json ({error})") from error
    mapping = class_to_freesurfer(meta)
    if len(mapping) < 2:
        raise SubctInputError(dataset_json_path, "no label maps to FreeSurfer IDs")
    written: list[Path] = []
    failures: list[str] = []
    for path in iter_volume_files(predictions_dir):
        try:
            volume = load_volume(path)
            labels = remap(np.asarray(volume.array).astype(np.int32), mapping)
            target = output_dir / f"{case_name(path)}.nii.gz"
            written.append(save_volume(volume.with_array(labels), target))
        except SubctInputError as error:
            failures.append(str(error))
    return written, failures
