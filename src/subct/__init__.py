"""subct: segmentation of subcortical brain structures in head CT.

One package per pipeline stage (see ``docs/architecture.md``), in the order data flows:

- :mod:`subct.io` reads and writes volumes; :mod:`subct.image` holds them and resamples,
  masks and bridges them to SimpleITK; :mod:`subct.labels` defines the label schemes.
- :mod:`subct.transfer` carries MRI segmentations to CT (segmenters, fusion, registration);
  :mod:`subct.dataset` builds training sets from MRI/CT pairs; :mod:`subct.synth` makes
  synthetic CTs from label maps.
- :mod:`subct.model` defines the network and its preprocessing, checkpoints and engines;
  :mod:`subct.training` trains it; :mod:`subct.inference` segments CTs with it
  (:func:`subct.segment`); :mod:`subct.evaluation` scores label maps; :mod:`subct.qc`
  checks and shows results; :mod:`subct.runner` runs cases locally or on Dask;
  :mod:`subct.cli` is the command line.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings

from subct.errors import SubctError, SubctInputError
from subct.model.runtime import prepare_thread_environment

prepare_thread_environment()  # before anything loads torch's OpenMP runtime

__all__ = ["SegmentationResult", "SubctError", "SubctInputError", "__version__", "segment"]

_LAZY_EXPORTS = {
    "segment": "subct.inference.pipeline",
    "SegmentationResult": "subct.inference.pipeline",
}


#: Modules of subct ≤ 0.1 that moved into the stage packages: ``import subct.resample``
#: etc. keep working (with a DeprecationWarning) and give the new module's names.
_MOVED_MODULES: dict[str, str] = {
    "subct.resample": "subct.image.resample",
    "subct.metrics": "subct.evaluation.metrics",
    "subct.networks": "subct.model.networks",
    "subct.losses": "subct.model.losses",
    "subct.checkpoint": "subct.model.checkpoint",
    "subct.runtime": "subct.model.runtime",
    "subct.preprocessing": "subct.model.preprocessing",
    "subct.dicom": "subct.io.dicom",
    "subct.fusion": "subct.transfer.fusion",
    "subct.registration": "subct.transfer.registration",
    "subct.nnunet_export": "subct.dataset.nnunet",
    "subct.overlay": "subct.qc.overlay",
    "subct.qc_figures": "subct.qc.figures",
    "subct.models": "subct.model.registry",
    "subct.pseudo_ct": "subct.synth.pseudo_ct",
}


class _MovedModuleLoader(importlib.abc.Loader):
    """Fills an old module name with the names of the module that replaced it."""

    def __init__(self, new_name: str) -> None:
        self.new_name = new_name

    def exec_module(self, module: types.ModuleType) -> None:
        warnings.warn(f"{module.__name__} moved to {self.new_name}; import it from there",
                      DeprecationWarning, stacklevel=2)
        new = importlib.import_module(self.new_name)
        module.__dict__.update({key: value for key, value in vars(new).items()
                                if not key.startswith("__")})


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        new_name = _MOVED_MODULES.get(fullname)
        if new_name is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedModuleLoader(new_name))


sys.meta_path.append(_MovedModuleFinder())


def __getattr__(name: str) -> object:
    """Import heavy parts (torch, MONAI) only when ``subct.segment`` etc. are used."""
    if name in _LAZY_EXPORTS:
        return getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
    raise AttributeError(f"module 'subct' has no attribute {name!r}")
