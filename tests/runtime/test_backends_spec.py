"""The feature-backend spec (issue 18): what a tracker hands ``runtime.backends``.

A spec from each tracker's config (RT-MDNet, MetaRTT with --meta/--prune, MLT), the manifest
check reading the spec (and refusing one that does not fit a folder), and the layering: no module
of ``runtime/backends`` imports a tracker package.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from runtime.backends import (
    FeatureBackendSpec,
    OnnxRuntimeBackend,
    TensorRTBackend,
    TorchBackend,
    create_backend,
    use_backend,
)
from runtime.backends.manifest import (
    MANIFEST_FILE,
    ManifestMismatchError,
    check_manifest,
    checkpoint_record,
    file_record,
)
from runtime.backends.spec import resolve_spec
from runtime.hashing import sha256_file
from runtime.mlt import MLTConfig, MLTTracker
from runtime.paths import PROJECT_ROOT
from runtime.rtmdnet import RTMDNetConfig, RTMDNetTracker
from runtime.rtmdnet.meta import SHIPPED_CHECKPOINT
from runtime.rtmdnet.prune import SHIPPED_PRUNE
from tests.support import DATA, NANOTRACK, needs_weights

BACKENDS = PROJECT_ROOT / "runtime" / "backends"
TRACKER_PACKAGES = ("runtime.rtmdnet", "runtime.mlt", "runtime.nanotrack")


# --- a spec from each tracker's config -----------------------------------------------------------
def test_spec_from_the_rtmdnet_config(tmp_path):
    config = RTMDNetConfig(
        backbone="vggm", backend="onnxruntime", export_dir=str(tmp_path), precision="int8"
    )
    spec = config.backend_spec(tmp_path / "data")
    assert spec == FeatureBackendSpec(
        backbone="vggm",
        weights_dir=tmp_path / "data" / "weights",
        roi_size=3,
        roi_sampling_ratio=2,
        backend="onnxruntime",
        precision="int8",
        device="cpu",
        export_dir=tmp_path,
    )
    assert spec.pools and spec.bound_checkpoints() == {"meta": None, "prune": None}
    # Frozen; changes make a copy.
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.backbone = "nanotrack"  # type: ignore[misc]
    assert config.backend_spec(tmp_path, threads=2).threads == 2
    assert spec.replace(backend="torch").backend == "torch" and spec.backend == "onnxruntime"
    # The spec's defaults are RT-MDNet's: a backend built without one serves the default tracker.
    assert RTMDNetConfig().backend_spec() == FeatureBackendSpec()


def test_spec_from_the_metartt_config_binds_meta_and_prune():
    """--meta / --prune (the config's ``meta`` / ``prune``) are the checkpoints a folder binds."""
    spec = RTMDNetConfig(meta=str(SHIPPED_CHECKPOINT), prune=str(SHIPPED_PRUNE)).backend_spec()
    assert spec.meta_checkpoint == str(SHIPPED_CHECKPOINT)
    assert spec.prune_checkpoint == str(SHIPPED_PRUNE)
    bound = {"meta": str(SHIPPED_CHECKPOINT), "prune": str(SHIPPED_PRUNE)}
    assert spec.bound_checkpoints() == bound
    assert RTMDNetConfig(prune="fit").backend_spec().prune_checkpoint == "fit"


@needs_weights
def test_the_tracker_hands_its_spec_to_the_backend():
    tracker = RTMDNetTracker(RTMDNetConfig(meta=str(SHIPPED_CHECKPOINT), backend="torch"), DATA)
    spec = tracker.backend_spec()
    assert spec == tracker.config.backend_spec(DATA)
    assert spec.meta_checkpoint == str(SHIPPED_CHECKPOINT)
    assert isinstance(tracker.backend, TorchBackend)
    assert tracker.backend.extractor is tracker.extractor
    assert tracker.extractor.feature_dim == 96 * 3 * 3


def test_spec_from_the_mlt_config_pools_nothing(tmp_path):
    assert "roi_size" not in {f.name for f in dataclasses.fields(MLTConfig)}
    assert "roi_sampling_ratio" not in {f.name for f in dataclasses.fields(MLTConfig)}
    spec = MLTConfig(backend="onnxruntime", export_dir=str(tmp_path)).backend_spec(tmp_path)
    assert spec.backbone == "nanotrack" and spec.weights_dir == tmp_path / "weights"
    assert spec.roi_size is None and spec.roi_sampling_ratio is None and not spec.pools
    assert (spec.backend, spec.export_dir, spec.precision) == ("onnxruntime", tmp_path, "fp32")
    assert spec.bound_checkpoints() == {"meta": None, "prune": None}
    with pytest.raises(ValueError, match="'paper' trunk runs inside the matching network"):
        MLTConfig(backbone="paper").backend_spec()


@needs_weights
def test_mlt_runs_its_trunk_through_a_backend_that_batches():
    tracker = MLTTracker(MLTConfig(backend="torch"), DATA)
    assert isinstance(tracker.backend, TorchBackend) and tracker.backend.takes_batches
    assert not tracker.backend.extractor.pools  # the trunk alone, no RoIAlign
    assert tracker.backend_spec() == tracker.config.backend_spec(DATA)
    # use_backend takes the tracker's own spec too.
    assert isinstance(use_backend(tracker, "torch", verbose=False), TorchBackend)


def test_every_backend_says_whether_it_takes_batches():
    assert TorchBackend.takes_batches is True
    assert OnnxRuntimeBackend.takes_batches is False
    assert TensorRTBackend.takes_batches is False


def test_resolve_spec_and_create_backend_take_specs_only(tmp_path):
    spec = FeatureBackendSpec(backbone="vggm")
    assert resolve_spec(spec) is spec
    from_config = resolve_spec(RTMDNetConfig(backbone="vggm"), tmp_path)
    assert from_config == RTMDNetConfig(backbone="vggm").backend_spec(tmp_path)
    assert resolve_spec(None, tmp_path) == FeatureBackendSpec(weights_dir=tmp_path / "weights")
    with pytest.raises(TypeError, match="data_dir is for a tracker config"):
        resolve_spec(spec, tmp_path)
    with pytest.raises(TypeError, match="expected a FeatureBackendSpec"):
        resolve_spec(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes a FeatureBackendSpec"):
        create_backend(RTMDNetConfig())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="does not take a feature backend"):
        use_backend(object(), "torch")


# --- the manifest check reads the spec -----------------------------------------------------------
def _graph(path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 4], np.arange(4.0).tolist())
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def _folder(root: Path, meta: Path | None = None, roi_size: int = 3) -> tuple[Path, dict]:
    """A small export folder of the nanotrack backbone (graphs hashed), bound to ``meta``."""
    folder = root / "export"
    folder.mkdir()
    graphs = {}
    for name in ("backbone", "roi_pool"):
        _graph(folder / f"{name}.onnx")
        graphs[name] = {"onnx": f"{name}.onnx", "sha256": sha256_file(folder / f"{name}.onnx")}
    manifest = {
        "format": 1,
        "backbone": "nanotrack",
        "checkpoint": checkpoint_record("nanotrack", DATA / "weights"),
        "config": {"backbone": "nanotrack", "roi_size": roi_size, "roi_sampling_ratio": 2},
        "precision": "fp32",
        "graphs": graphs,
        "tracker_checkpoints": {"meta": file_record(meta)} if meta is not None else {},
        "pruned": None,
        "engines": None,
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    return folder, manifest


@needs_weights
def test_manifest_check_refuses_a_spec_that_does_not_fit_the_folder(tmp_path):
    folder, manifest = _folder(tmp_path, meta=SHIPPED_CHECKPOINT)
    fits = RTMDNetConfig(meta=str(SHIPPED_CHECKPOINT)).backend_spec(DATA)
    check_manifest(manifest, fits, folder)
    check_manifest(manifest, fits.replace(meta_checkpoint=None), folder)  # serves any head
    with pytest.raises(ManifestMismatchError, match="backbone='nanotrack'.*'mobilenet_v2'"):
        check_manifest(manifest, fits.replace(backbone="mobilenet_v2"), folder)
    with pytest.raises(ManifestMismatchError, match="roi_size=3 .* roi_size=5"):
        check_manifest(manifest, fits.replace(roi_size=5), folder)
    with pytest.raises(ManifestMismatchError, match="holds fp32 graphs but the tracker asks"):
        check_manifest(manifest, fits.replace(precision="int8"), folder)
    other = tmp_path / "other_meta.pt"
    other.write_bytes(SHIPPED_CHECKPOINT.read_bytes() + b"x")
    with pytest.raises(ManifestMismatchError, match="meta checkpoint metartt.pt.*--ckpt"):
        check_manifest(manifest, fits.replace(meta_checkpoint=str(other)), folder)
    # Other weights: the backbone's file in the spec's weights_dir is hashed.
    weights = tmp_path / "weights" / NANOTRACK.relative_to(DATA / "weights")
    weights.parent.mkdir(parents=True)
    weights.write_bytes(NANOTRACK.read_bytes() + b"x")
    with pytest.raises(ManifestMismatchError, match="checkpoint hash mismatch"):
        check_manifest(manifest, fits.replace(weights_dir=tmp_path / "weights"), folder)
    # The backend constructors run the same check on the spec they are given.
    OnnxRuntimeBackend(folder, fits)
    with pytest.raises(ManifestMismatchError, match="meta checkpoint"):
        OnnxRuntimeBackend(folder, fits.replace(meta_checkpoint=str(other)))


@needs_weights
def test_a_spec_without_pooling_accepts_any_roi_settings(tmp_path):
    """MLT reads the trunk's feature map only: a folder's RoIAlign settings do not concern it."""
    folder, manifest = _folder(tmp_path, roi_size=5)
    mlt = MLTConfig().backend_spec(DATA)
    check_manifest(manifest, mlt, folder)
    with pytest.raises(ManifestMismatchError, match="roi_size=5"):
        check_manifest(manifest, RTMDNetConfig().backend_spec(DATA), folder)
    with pytest.raises(ManifestMismatchError, match="backbone='nanotrack'.*'vggm'"):
        check_manifest(manifest, mlt.replace(backbone="vggm"), folder)


# --- layering ------------------------------------------------------------------------------------
def _imports(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node, node.module))
            found += [(node, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_no_backend_module_imports_a_tracker_package():
    """runtime/backends sits below every tracker: not even lazily or under TYPE_CHECKING."""
    modules = sorted(BACKENDS.glob("*.py"))
    assert {p.name for p in modules} >= {"__init__.py", "base.py", "manifest.py", "spec.py"}
    offending = [
        f"{path.name}:{node.lineno} imports {name}"
        for path in modules
        for node, name in _imports(ast.parse(path.read_text()))
        if any(name == pkg or name.startswith(pkg + ".") for pkg in TRACKER_PACKAGES)
    ]
    assert offending == []


def test_backend_modules_import_at_the_top_but_optional_tensorrt():
    """Function-level imports in runtime/backends are only the optional heavy ``tensorrt``, and
    ``openvino``, imported with the thread's signal state kept (openvino_backend.py says why)."""
    lazy = []
    for path in sorted(BACKENDS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                lazy += [
                    (path.name, name)
                    for node, name in _imports(func)
                    if isinstance(node, ast.Import)  # "from x import y" counted once, as x
                    or name == node.module
                ]
    assert {name for _, name in lazy} <= {"tensorrt", "openvino"}, lazy
