"""``bnsym gradcheck`` on inputs beyond random floats: integer labels, arrays from .npy and .npz
files, and the refusals (a negative seed, shapes too large to allocate) as one-line usage errors
with exit status 2."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from bnsym.cli import main

LOSSES = """
import numpy as np

def softmax_loss(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    return -np.log(p[np.arange(x.shape[0]), y]).mean(), (p, y)

def softmax_loss_backward(dout, cache):
    p, y = cache
    dx = p.copy()
    dx[np.arange(p.shape[0]), y] -= 1
    return dx * dout / p.shape[0], None

def softmax_loss_backward_no_onehot(dout, cache):
    p, y = cache
    return p * dout / p.shape[0], None

def scale(x, w):
    return x * w, (x, w)

def scale_backward(dout, cache):
    x, w = cache
    return dout * w, dout * x
"""


@pytest.fixture
def losses(tmp_path, monkeypatch):
    (tmp_path / "gc_losses.py").write_text(textwrap.dedent(LOSSES))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _run(*args):
    return CliRunner().invoke(main, ["gradcheck", *args])


def test_a_softmax_loss_with_integer_labels_from_the_shell(losses):
    ok = _run("gc_losses:softmax_loss", "gc_losses:softmax_loss_backward",
              "--input", "16,5", "--input", "int:0-4:16")  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert re.search(r"\n  y +\(16,\) +int64 +constant\n", ok.output), ok.output
    wrong = _run("gc_losses:softmax_loss", "gc_losses:softmax_loss_backward_no_onehot",
                 "--input", "16,5", "--input", "int:0-4:16")  # fmt: skip
    assert wrong.exit_code == 1
    assert "one entry per row of x differs, at the position y gives in each row" in wrong.output


def test_inputs_from_npy_and_npz_files(losses):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(8, 4)), rng.integers(0, 4, size=8)
    np.save(losses / "x.npy", x)
    np.savez(losses / "data.npz", x=x, y=y)
    np.savez(losses / "labels.npz", y)
    for args in (["x.npy", "data.npz:y"], ["data.npz:x", "labels.npz"]):
        result = _run("gc_losses:softmax_loss", "gc_losses:softmax_loss_backward",
                      "--input", args[0], "--input", args[1])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert re.search(r"\n  x +\(8, 4\) +float64 ", result.output), result.output


@pytest.mark.parametrize(
    "inputs, message",
    [
        (["int:9-0:4", "4"], "integers are int:LOW-HIGH:SHAPE, e.g. int:0-9:64"),
        (["missing.npy", "4"], "--input 'missing.npy': missing.npy does not exist"),
        (["data.npz", "4"], "give one array of data.npz as data.npz:NAME; it holds ['a', 'b']"),
        (["100000,100000", "1"], "the --input shapes need 74.5 GiB for the random inputs alone"),
    ],
    ids=["int-range", "missing-file", "npz-key", "huge"],
)
def test_bad_inputs_are_usage_errors(losses, inputs, message):
    np.savez(losses / "data.npz", a=np.ones(2), b=np.ones(2))
    result = _run("gc_losses:scale", "gc_losses:scale_backward",
                  "--input", inputs[0], "--input", inputs[1])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 4


def test_a_negative_seed_is_a_usage_error(losses):
    result = _run("gc_losses:scale", "gc_losses:scale_backward",
                  "--input", "3", "--input", "3", "--seed", "-1")  # fmt: skip
    assert result.exit_code == 2
    assert "Invalid value for '--seed': -1 is not in the range x>=0" in result.output


def _npy_header_only(path, shape, descr="<f8"):
    """An .npy file whose header claims ``shape`` and which holds no data."""
    with open(path, "wb") as f:
        header = {"descr": descr, "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)


def _damaged(data: bytes) -> bytes:
    """The bytes with one byte of the stored array flipped (a bad CRC)."""
    out = bytearray(data)
    out[len(out) // 2] ^= 0xFF
    return bytes(out)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda d: _npy_header_only(d / "x.npy", (10**11,)),
            "its header says shape (100000000000,) of float64, 745 GiB; give an array under 1 GiB",
        ),
        (
            lambda d: _npy_header_only(d / "x.npy", (100,)),
            "(800 bytes) but the file holds 0: it is cut short or damaged",
        ),
        (
            lambda d: np.save(d / "x.npy", np.array([1, "a"], dtype=object), allow_pickle=True),
            "the array holds Python objects (object), which only pickling can read",
        ),
        (
            lambda d: (d / "x.npz").write_bytes(b"not a zip file"),
            "cannot read x.npz: File is not a zip file",
        ),
        (
            lambda d: (
                np.savez(d / "ok.npz", x=np.arange(64.0)),
                (d / "x.npz").write_bytes(_damaged((d / "ok.npz").read_bytes())),
            ),
            "cannot read x.npz: Bad CRC-32 for file 'x.npy'",
        ),
        (
            lambda d: np.savez(d / "x.npz", x=np.array([{}], dtype=object)),
            "the array holds Python objects (object), which only pickling can read",
        ),
        (lambda d: (d / "x.npy").mkdir(), "x.npy is a directory"),
    ],
    ids=[
        "header-claims-745-GiB",
        "cut-short",
        "object-npy",
        "bad-zip",
        "bad-crc",
        "object-npz",
        "directory",
    ],  # fmt: skip
)
def test_a_bad_input_file_is_one_line_naming_it(losses, make, message):
    make(losses)
    spec = "x.npy" if (losses / "x.npy").exists() else "x.npz"
    result = _run("gc_losses:scale", "gc_losses:scale_backward", "--input", spec, "--input", "3")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: --input '{spec}': "), result.output
    assert message in lines[0], lines[0]
