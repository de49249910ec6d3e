"""Random shapes, dtypes, values and bytes thrown at ``image_metrics``, the readers and checkpoints.

Each call must return a valid result or raise the documented error: :class:`DataError` (metrics and
readers; a ``ValueError``) or :class:`CheckpointError` (checkpoints). Cases come from fixed seeds, so
a failure names a reproducible case.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from proseg_pyro.checkpoint import load_checkpoint, read_checkpoint
from proseg_pyro.config import ProSegConfig
from proseg_pyro.data import SliceSet, load_dataset
from proseg_pyro.data.export import write_manifest_dataset
from proseg_pyro.data.formats.lidc import read_lidc_pickle
from proseg_pyro.data.formats.npc import read_npc_case
from proseg_pyro.data.images import read_image
from proseg_pyro.data.synthetic import make_synthetic
from proseg_pyro.errors import CheckpointError, DataError
from proseg_pyro.metrics import image_metrics
from proseg_pyro.train import fit

from .conftest import tiny_config
from .helpers import one_thread  # noqa: F401  (a fixture)

CONFIG16 = ProSegConfig(image_size=16)
DTYPES = (bool, np.uint8, np.int8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64,
          np.complex64, object, np.str_)


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
    """An array of ``shape`` (dtype drawn from DTYPES if None): binary, in [0, 1], wide-ranged or special."""
    dtype = DTYPES[rng.integers(len(DTYPES))] if dtype is None else dtype
    kind = rng.integers(4)
    if kind == 0:
        values = rng.random(shape) < 0.4
    elif kind == 1:
        values = rng.random(shape)
    elif kind == 2:
        values = rng.normal(0, 300, shape)
    else:
        values = rng.choice(np.array([0.0, 1.0, 0.5, np.nan, np.inf, -np.inf, -1.0, 2.0]), shape)
    with np.errstate(invalid="ignore", over="ignore"):
        if dtype is np.str_:
            return values.astype(str)
        if np.issubdtype(np.dtype(dtype), np.integer):
            values = np.nan_to_num(values, nan=0, posinf=255, neginf=-3).clip(-100, 1000)
        return values.astype(dtype)


def random_shape(rng: np.random.Generator, ndim: int | None = None, most: int = 5) -> tuple[int, ...]:
    """``ndim`` (random if None: 0-4) sizes in 0 .. most - 1."""
    ndim = rng.integers(0, 5) if ndim is None else ndim
    return tuple(int(size) for size in rng.integers(0, most, ndim))


def expect(case: str, call: Callable[[], Any], error: type[Exception], valid: Callable[[Any], None]) -> bool:
    """Run ``call``: it must raise ``error`` (False) or return a result ``valid`` accepts (True)."""
    try:
        result = call()
    except error as err:
        assert "\n" not in str(err), f"{case}: multi-line message {err}"
        return False
    except Exception as err:  # noqa: BLE001  (the point: nothing else may escape)
        pytest.fail(f"{case}: {type(err).__name__}: {err}")
    try:
        valid(result)
    except AssertionError as err:
        pytest.fail(f"{case}: invalid result: {err}")
    return True


# --- metrics ---------------------------------------------------------------------------------------
METRIC_KEYS = {"ged", "d_pa", "d_pp", "d_aa", "dice_soft", "dice_max", "dice_match", "dice_rater_matched"}


def _valid_metrics(annotations: int, paired: bool) -> Callable[[dict], None]:
    def check(result: dict) -> None:
        assert set(result) == METRIC_KEYS | ({"dice_rater"} if paired else set())
        for key, value in result.items():
            values = value if isinstance(value, list) else [value]
            assert len(values) == (annotations if isinstance(value, list) else 1)
            low = -2.0 if key == "ged" else 0.0
            assert all(isinstance(v, float) and low - 1e-9 <= v <= 2.0 + 1e-9 for v in values), (key, value)
    return check


def _maybe(rng: np.random.Generator, usual: Any, odd: Callable[[], Any], p_odd: float = 0.1) -> Any:
    """``usual``, or (with probability ``p_odd``) ``odd()``."""
    return odd() if rng.random() < p_odd else usual


def test_image_metrics_fuzz():
    rng = np.random.default_rng(0)
    valid = 0
    for case in range(400):
        spatial = _maybe(rng, random_shape(rng, ndim=int(rng.integers(2, 4)), most=6), lambda: random_shape(rng))
        n_ann = _maybe(rng, int(rng.integers(1, 5)), lambda: 0, 0.05)
        n_pred = _maybe(rng, int(rng.integers(n_ann, 7)), lambda: int(rng.integers(0, 6)))
        ann_dtype = [bool, np.uint8, np.int64, np.float32][rng.integers(4)]
        annotations = _maybe(rng, random_array(rng, (n_ann, *spatial), bool).astype(ann_dtype),
                             lambda: random_array(rng, (n_ann, *spatial)))
        prob_dtype = [np.float16, np.float32, np.float64][rng.integers(3)]
        prob_shape = _maybe(rng, (n_pred, *spatial), lambda: (n_pred, *random_shape(rng)), 0.05)
        probabilities = _maybe(rng, rng.random(prob_shape).astype(prob_dtype), lambda: random_array(rng, prob_shape))
        if rng.random() < 0.3 and probabilities.dtype.kind in "biuf":
            probabilities = torch.as_tensor(probabilities)
        convention = _maybe(rng, ["paper", "dpersona"][rng.integers(2)], lambda: "kohl", 0.05)
        paired = [None, None, True, False][rng.integers(4)]
        description = (f"case {case}: annotations {annotations.shape} {annotations.dtype}, probabilities "
                       f"{tuple(probabilities.shape)} {probabilities.dtype}, {convention}, paired={paired}")
        valid += expect(description, lambda: image_metrics(annotations, probabilities, convention, paired), DataError,
                        _valid_metrics(n_ann, paired if paired is not None else n_ann == n_pred))
    assert valid > 100  # the generator reaches the valid region, not only errors


# --- readers ----------------------------------------------------------------------------------------
def _valid_slices(result: SliceSet) -> None:
    count, raters = result.mask.shape
    assert result.images.shape == (count, result.images.shape[1], 16, 16) and result.images.dtype == np.float32
    assert np.isfinite(result.images).all()
    assert result.annotations.shape == (count, raters, 16, 16) and result.annotations.dtype == np.uint8
    assert result.annotations.min() >= 0 and result.annotations.max() < len(result.classes)
    assert result.mask.dtype == bool and count == len(result.subjects) == len(result.splits)


def _random_value(rng: np.random.Generator, depth: int = 0) -> Any:
    """A random picklable value: scalars, strings, arrays, or (shallow) containers of them."""
    kind = rng.integers(8 if depth < 2 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return [int(rng.integers(-5, 5)), float(rng.normal()), float("nan")][rng.integers(3)]
    if kind == 2:
        return str(rng.integers(100))
    if kind in (3, 4):
        return random_array(rng, random_shape(rng, ndim=int(rng.integers(0, 4)), most=7))
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.integers(0, 4))]
    if kind == 6:
        return tuple(_random_value(rng, depth + 1) for _ in range(rng.integers(0, 3)))
    return {str(rng.integers(4)): _random_value(rng, depth + 1) for _ in range(rng.integers(0, 3))}


def _random_lidc_record(rng: np.random.Generator) -> Any:
    """Mostly well-formed LIDC records, sometimes with random parts swapped for random values."""
    shape = _maybe(rng, (12, 14), lambda: random_shape(rng, ndim=2, most=20), 0.2)
    record = {"image": _maybe(rng, random_array(rng, shape, np.float32), lambda: random_array(rng, shape)),
              "masks": [_maybe(rng, random_array(rng, shape, np.uint8), lambda: random_array(rng, shape), 0.05)
                        for _ in range(_maybe(rng, rng.integers(1, 5), lambda: 0, 0.05))],
              "series_uid": f"s{rng.integers(5)}_x"}
    for key in list(record):
        record[key] = _maybe(rng, record[key], lambda: _random_value(rng), 0.05)
    return _maybe(rng, record, lambda: _random_value(rng), 0.03)


def _corrupt(rng: np.random.Generator, data: bytes) -> bytes:
    """``data`` truncated, with flipped bytes, or replaced by random bytes (each sometimes)."""
    kind = rng.integers(5)
    if kind == 0 and data:
        return data[:rng.integers(len(data))]
    if kind == 1 and data:
        data = bytearray(data)
        for position in rng.integers(0, len(data), int(rng.integers(1, 4))):
            data[position] = int(rng.integers(256))
        return bytes(data)
    if kind == 2:
        return rng.bytes(int(rng.integers(0, 300)))
    return data


@pytest.mark.filterwarnings("error::numpy.exceptions.ComplexWarning")  # complex input is refused, never cast
def test_lidc_pickle_fuzz(tmp_path):
    rng = np.random.default_rng(1)
    valid = 0
    for case in range(200):
        records = {f"k{i}": _random_lidc_record(rng) for i in range(_maybe(rng, rng.integers(1, 4), lambda: 0, 0.05))}
        data = pickle.dumps(_maybe(rng, records, lambda: _random_value(rng), 0.05),
                            protocol=int(rng.integers(pickle.HIGHEST_PROTOCOL + 1)))
        path = tmp_path / f"case{case}.pkl"
        path.write_bytes(_maybe(rng, data, lambda: _corrupt(rng, data), 0.2))
        keep = ["area", "keep"][rng.integers(2)]
        valid += expect(f"case {case}", lambda: read_lidc_pickle(path, keep, config=CONFIG16), DataError,
                        _valid_slices)
    assert valid > 40


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_lidc_pickle_of_any_protocol_loads(tmp_path, protocol):
    rng = np.random.default_rng(protocol)
    records = {"k0": {"image": rng.random((12, 14)), "masks": [rng.random((12, 14)) > 0.5] * 2, "series_uid": "s_0"}}
    (tmp_path / "lidc.pkl").write_bytes(pickle.dumps(records, protocol=protocol))
    _valid_slices(read_lidc_pickle(tmp_path / "lidc.pkl", config=CONFIG16))


def _write_random_h5(rng: np.random.Generator, path: Path) -> None:
    """Mostly well-formed NPC cases, sometimes with keys missing, groups, other shapes or dtypes."""
    shape = _maybe(rng, ((2, 6, 6), (6, 6))[rng.integers(2)], lambda: random_shape(rng, most=6), 0.15)
    with h5py.File(path, "w") as handle:
        for key in ("t1", "t1c", "t2", "label_a1", "label_a2", "label_a3", "label_a4", "extra"):
            if rng.random() < 0.05:
                continue
            if rng.random() < 0.02:
                handle.create_group(key)
                continue
            usual = (rng.random(shape) < 0.3).astype(np.uint8) if key.startswith("label") else rng.normal(size=shape)
            array = _maybe(rng, usual, lambda: random_array(rng, _maybe(rng, shape, lambda: random_shape(rng), 0.3)),
                           0.08)
            if array.dtype.kind in "OU":  # h5py stores neither object nor unicode arrays
                array = array.astype(float if array.dtype.kind == "O" else "S")
            handle[key] = array


def test_npc_h5_fuzz(tmp_path):
    rng = np.random.default_rng(2)
    valid = 0

    def check(result: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        images, labels, mask = result
        assert images.ndim == 4 and images.shape[1] == 3 and images.dtype == np.float32 and np.isfinite(images).all()
        assert 0 not in images.shape
        assert labels.shape == (images.shape[0], 4, *images.shape[2:]) and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= {0, 1} and mask.shape == (4,) and mask.dtype == bool

    for case in range(120):
        path = tmp_path / f"case{case}.h5"
        _write_random_h5(rng, path)
        if rng.random() < 0.1:
            path.write_bytes(_corrupt(rng, path.read_bytes()))
        valid += expect(f"case {case}", lambda: read_npc_case(path), DataError, check)
    assert valid > 40


IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd", ".png", ".tif")


def _write_random_image(rng: np.random.Generator, path: Path) -> None:
    """A real image of a random pixel type and dimension, or bytes that pretend to be one."""
    if rng.random() < 0.3:
        path.write_bytes(rng.bytes(int(rng.integers(0, 400))))
        return
    dtype = [np.uint8, np.int16, np.float32, np.float64][rng.integers(4)]
    shape = tuple(int(size) for size in rng.integers(2, 5, rng.integers(2, 5)))
    vector = rng.random() < 0.2
    image = sitk.GetImageFromArray(random_array(rng, shape, dtype), isVector=vector)
    try:
        sitk.WriteImage(image, str(path))
    except RuntimeError:  # this format cannot hold this image
        path.write_bytes(b"")
    if rng.random() < 0.3:
        path.write_bytes(path.read_bytes()[:rng.integers(1, max(2, path.stat().st_size))])


def test_read_image_fuzz(tmp_path):
    rng = np.random.default_rng(3)
    valid = 0

    def check(result) -> None:
        array, geometry = result
        assert array.ndim == 4 and array.shape[0] >= 1 and array.shape[1] >= 1
        assert tuple(reversed(array.shape[2:])) == geometry.size[:2]

    for case in range(80):
        path = tmp_path / f"case{case}{IMAGE_SUFFIXES[rng.integers(len(IMAGE_SUFFIXES))]}"
        _write_random_image(rng, path)
        valid += expect(f"case {case} ({path.name})", lambda: read_image(path), DataError, check)
    assert valid > 10


def _mutate_json(rng: np.random.Generator, value: Any) -> Any:
    """``value`` with one random node replaced by a random JSON value."""
    if isinstance(value, (dict, list)) and value and rng.random() < 0.85:
        keys = list(value) if isinstance(value, dict) else list(range(len(value)))
        key = keys[rng.integers(len(keys))]
        value = json.loads(json.dumps(value))
        value[key] = _mutate_json(rng, value[key])
        return value
    odd = [None, 3, -1.5, "x", "train", "0000_syn0000_image.nii.gz", [], {}, ["x", "x"], {"x": "absent.nii.gz"}, True]
    return _maybe(rng, value, lambda: odd[rng.integers(len(odd))], 0.8)


def test_manifest_fuzz(tmp_path):
    rng = np.random.default_rng(4)
    slices, _ = make_synthetic(num_images=3, image_size=16, seed=0)
    manifest = write_manifest_dataset(slices, tmp_path)
    original = json.loads(manifest.read_text())
    valid = 0
    for case in range(80):
        values = original
        for _ in range(rng.integers(1, 3)):
            values = _mutate_json(rng, values)
        manifest.write_text(json.dumps(values))
        valid += expect(f"case {case}: {json.dumps(values)[:300]}",
                        lambda: load_dataset(manifest, config=CONFIG16, cache=False), DataError, _valid_slices)
    assert valid > 10


# --- checkpoints ------------------------------------------------------------------------------------
@pytest.mark.usefixtures("one_thread")
def test_checkpoint_bytes_fuzz(tiny_set, tmp_path):
    slices, _ = tiny_set
    config = tiny_config(steps=2).fitted_to(slices)
    fit(config, slices.split("train").select(range(8)), None, tmp_path / "run", progress=False)
    data = (tmp_path / "run" / "best.pt").read_bytes()
    rng = np.random.default_rng(5)
    path = tmp_path / "fuzzed.pt"
    for case in range(60):
        path.write_bytes(_corrupt(rng, data))
        expect(f"case {case}", lambda: read_checkpoint(path), CheckpointError, lambda content: None)
        expect(f"case {case}", lambda: load_checkpoint(path), CheckpointError,
               lambda loaded: loaded[2].validate())
