"""External MRI segmenters run as commands (FreeSurfer, SynthSeg, FastSurfer, ...).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from subct.errors import SubctError
from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.io.writers import save_volume

if TYPE_CHECKING:  # torch (meshnet) is heavy: import it only when a MeshNet runs
    pass
from subct.transfer.segmenter import Segmenter, SegmenterUnavailableError, canonical_on_grid


@dataclass(frozen=True)
class ExternalToolSpec:
    """How to run one external segmentation tool and where its result lands.

    Attributes:
        name: registry name.
        executable: program looked up on ``PATH``.
        label_convention: key for :func:`subct.labels.convert.convert_to_canonical`.
        build_command: (input NIfTI, work folder, threads) → argument list.
        output: work folder → the label map the tool writes.
        install_hint: how to get the tool.
    """

    name: str
    executable: str
    label_convention: str
    build_command: Callable[[Path, Path, int], list[str]]
    output: Callable[[Path], Path]
    install_hint: str


EXTERNAL_TOOLS: dict[str, ExternalToolSpec] = {
    spec.name: spec
    for spec in (
        ExternalToolSpec(
            "freesurfer", "recon-all", "aseg",
            lambda t1, work, threads: ["recon-all", "-subjid", "subct", "-i", str(t1),
                                       "-sd", str(work), "-all", "-threads", str(threads)],
            lambda work: work / "subct" / "mri" / "aseg.mgz",
            "install FreeSurfer (https://surfer.nmr.mgh.harvard.edu) and source "
            "$FREESURFER_HOME/SetUpFreeSurfer.sh",
        ),
        ExternalToolSpec(
            "samseg", "run_samseg", "samseg",
            lambda t1, work, threads: ["run_samseg", "--input", str(t1), "--output",
                                       str(work / "samseg"), "--threads", str(threads)],
            lambda work: work / "samseg" / "seg.mgz",
            "install FreeSurfer >= 7 (run_samseg is part of it)",
        ),
        ExternalToolSpec(
            "fastsurfer", "run_fastsurfer.sh", "fastsurfer",
            lambda t1, work, threads: ["run_fastsurfer.sh", "--t1", str(t1), "--sid", "subct",
                                       "--sd", str(work), "--seg_only", "--threads",
                                       str(threads)],
            lambda work: work / "subct" / "mri" / "aparc.DKTatlas+aseg.deep.mgz",
            "install FastSurfer (https://github.com/Deep-MI/FastSurfer) and put "
            "run_fastsurfer.sh on PATH",
        ),
        ExternalToolSpec(
            "synthseg", "mri_synthseg", "synthseg",
            lambda t1, work, threads: ["mri_synthseg", "--i", str(t1), "--o",
                                       str(work / "synthseg.nii.gz"), "--threads",
                                       str(threads)],
            lambda work: work / "synthseg.nii.gz",
            "install FreeSurfer >= 7.3 (mri_synthseg) or SynthSeg "
            "(https://github.com/BBillot/SynthSeg)",
        ),
    )
}


@dataclass
class ExternalToolSegmenter(Segmenter):
    """An installed segmentation tool run as a subprocess, or its precomputed output.

    Attributes:
        spec: how to call the tool.
        from_file: the tool's output label map computed elsewhere (skips running it).
        threads: threads passed to the tool.
        work_dir: where the tool writes (default: a temporary folder, removed after).
        timeout_s: kill the tool after this many seconds (recon-all takes hours).
    """

    spec: ExternalToolSpec
    from_file: Path | None = None
    threads: int = 1
    work_dir: Path | None = None
    timeout_s: float = 24 * 3600.0

    def __post_init__(self) -> None:
        self.name = self.spec.name
        self.__doc__ = f"{self.spec.name}: runs `{self.spec.executable}` or reads --from"

    def check_available(self) -> None:
        """The executable must be on PATH unless a precomputed output is given."""
        if self.from_file is None and shutil.which(self.spec.executable) is None:
            raise SegmenterUnavailableError(
                f"{self.name}: executable '{self.spec.executable}' not found on PATH "
                f"({self.spec.install_hint}); or run {self.name} elsewhere and pass its "
                f"output label map with --from FILE (Python: get_segmenter({self.name!r}, "
                "from_file=...))"
            )

    def segment(self, mri: Volume) -> Volume:
        """Run the tool (or read ``from_file``) → canonical labels on ``mri``'s grid."""
        if self.from_file is not None:
            return canonical_on_grid(load_volume(self.from_file), mri.geometry,
                                     self.spec.label_convention)
        self.check_available()
        with tempfile.TemporaryDirectory(prefix=f"subct-{self.name}-") as temporary:
            work = Path(self.work_dir) if self.work_dir is not None else Path(temporary)
            work.mkdir(parents=True, exist_ok=True)
            output = run_tool_command(
                self.spec.build_command(_input_file(mri, work), work, self.threads),
                self.spec.output(work), self.name, self.timeout_s,
            )
            return canonical_on_grid(load_volume(output), mri.geometry,
                                     self.spec.label_convention)


@dataclass
class CommandTemplateSegmenter(Segmenter):
    """A tool without a standard executable (QuickNAT), run from a user command template.

    ``command`` is a format string with ``{input}`` (the T1 as NIfTI) and ``{output}``
    (where the label map must be written), e.g. a wrapper script around QuickNAT's
    ``run.py --mode=eval_bulk``. QuickNAT maps are class indices 0..32 (FreeSurfer
    remap of quickNAT_pytorch); set ``label_convention="aseg"`` for FreeSurfer IDs.
    """

    name: str = "quicknat"
    command: str | None = None
    from_file: Path | None = None
    label_convention: str = "quicknat"
    timeout_s: float = 3600.0

    def segment(self, mri: Volume) -> Volume:
        """Read ``from_file`` or run ``command`` → canonical labels on ``mri``'s grid."""
        if self.from_file is not None:
            return canonical_on_grid(load_volume(self.from_file), mri.geometry,
                                     self.label_convention)
        if not self.command:
            raise SegmenterUnavailableError(
                f"{self.name}: QuickNAT has no installed executable; give a command line "
                "template with {input} and {output} (option command=...) or pass its "
                "precomputed output label map with --from FILE (Python: "
                f"get_segmenter({self.name!r}, from_file=...))"
            )
        import shlex

        with tempfile.TemporaryDirectory(prefix=f"subct-{self.name}-") as temporary:
            work = Path(temporary)
            output = work / "labels.nii.gz"
            arguments = [part.format(input=_input_file(mri, work), output=output)
                         for part in shlex.split(self.command)]
            if shutil.which(arguments[0]) is None:
                raise SegmenterUnavailableError(
                    f"{self.name}: executable '{arguments[0]}' not found on PATH; or pass "
                    "its precomputed output label map with --from FILE"
                )
            run_tool_command(arguments, output, self.name, self.timeout_s)
            return canonical_on_grid(load_volume(output), mri.geometry, self.label_convention)


def _input_file(mri: Volume, work: Path) -> Path:
    """The MRI as a file the tool can read: its own file, or a NIfTI in ``work``."""
    if mri.path is not None and mri.path.is_file():
        return mri.path
    return save_volume(mri, work / "t1.nii.gz")


def run_tool_command(arguments: Sequence[str], expected_output: Path, name: str,
                     timeout_s: float) -> Path:
    """Run a tool; raise :class:`SubctError` with its last output lines if it fails."""
    try:
        completed = subprocess.run(list(arguments), capture_output=True, text=True,
                                   timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as error:
        raise SubctError(f"{name}: timed out after {timeout_s:g} s") from error
    except OSError as error:
        raise SubctError(f"{name}: cannot run {arguments[0]} ({error})") from error
    if completed.returncode != 0 or not expected_output.is_file():
        tail = " | ".join((completed.stderr or completed.stdout).strip().splitlines()[-3:])
        problem = (f"exit code {completed.returncode}" if completed.returncode
                   else f"no output at {expected_output}")
        raise SubctError(f"{name}: {' '.join(arguments[:1])} failed ({problem}): {tail}")
    return expected_output
