"""Every combination renders (issue 20, item 2): a covering sample of layer × mode × order ×
ε placement × variance × format × with/without a worked example × m, in which every pair of
options occurs, through `bnsym derive`.

Each case ends in exit 0, or in a one-line refusal (exit 2) that the options themselves
explain: a refused case must be refused by :func:`bnsym.core.options.make_options` (the layer
has no eval mode, RMS norm has no unbiased variance, …) with the same message. A case the
options accept and a renderer refuses — LaTeX notes of eval mode at order 2 once ended in
"no LaTeX for 'ρ'" — is a failure, as is any traceback.

The formats are read from the table :data:`bnsym.notes.formats.FORMATS`, so a new row (HTML)
is in the sample the day it is added; the layers from the registry, with a layer declared in
a user's file beside them (not centred, with an eval mode).
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnsym.cli import main
from bnsym.core.options import make_options
from bnsym.errors import BnsymError
from bnsym.family.layers import LAYERS, Layer
from bnsym.notes.formats import FORMATS

#: A user's layer with running statistics, declared in a file as a user would (test-local):
#: the command line loads it from the file, the options below are checked with USER.
USER_FILE = (
    "import bnsym\n"
    "rmsrun = bnsym.Layer(name='rmsrun', centred=False, params='element', beta=False,\n"
    "                     modes=('train', 'eval'))\n"
)
USER = Layer(name="rmsrun", centred=False, params="element", beta=False, modes=("train", "eval"))
USER_SPEC = "rmsrun_decl.py:rmsrun"

FACTORS: dict[str, list[str]] = {
    "layer": [*LAYERS, USER_SPEC],
    "mode": ["train", "eval"],
    "order": ["1", "2", "3"],
    "eps_placement": ["inside", "outside", "sqrt-outside"],
    "variance": ["biased", "unbiased"],
    "format": list(FORMATS),
    "values": ["no", "yes"],
    "m": ["2", "4"],
}


def _example(case: dict[str, str]) -> dict[str, str]:
    """The worked example's options: values and dy, and running statistics in eval mode."""
    if case["values"] == "no":
        return {}
    m = int(case["m"])
    out = {"values": ",".join("2024"[:m]), "dy": ",".join(["1"] + ["0"] * (m - 1))}
    if case["mode"] == "eval":
        out.update(running_mean="1", running_var="2")
    return out


def _options(case: dict[str, str]):
    """The case's options as make_options reads them (BnsymError if it refuses them)."""
    layer = LAYERS.get(case["layer"], USER)
    return make_options(
        case["m"],
        layer=layer,
        channels=2 if layer.has_channels else None,
        mode=case["mode"],
        eps_placement=case["eps_placement"],
        variance=case["variance"],
        **_example(case),
    )


def _accepted(case: dict[str, str]) -> bool:
    try:
        _options(case)
    except BnsymError:
        return False
    return True


def _pairs(case: dict[str, str]) -> set[tuple[str, str, str, str]]:
    return {(a, case[a], b, case[b]) for a, b in itertools.combinations(FACTORS, 2)}


def covering_sample() -> list[dict[str, str]]:
    """A deterministic pairwise covering sample (greedy, AETG-like): each pick is the case of
    the full product that covers the most pairs not yet covered, a case the options accept
    preferred, ties broken by the product's order. Pairs that no accepted case holds (eval
    mode of a layer without one) are covered by refused cases."""
    product = [dict(zip(FACTORS, c, strict=True)) for c in itertools.product(*FACTORS.values())]
    accepted = [_accepted(c) for c in product]
    pairs = [_pairs(c) for c in product]
    uncovered = set().union(*pairs)
    sample = []
    while uncovered:
        best = max(range(len(product)), key=lambda k: (len(pairs[k] & uncovered), accepted[k], -k))
        sample.append(product[best])
        uncovered -= pairs[best]
    return sample


SAMPLE = covering_sample()


def _args(case: dict[str, str], tmp: Path) -> list[str]:
    layer = case["layer"]
    args = ["derive", "--layer", layer, "--m", case["m"], "--mode", case["mode"]]
    args += ["--order", case["order"], "--eps-placement", case["eps_placement"]]
    args += ["--variance", case["variance"]]
    if LAYERS.get(layer, USER).has_channels:
        args += ["--channels", "2"]
    for key, value in _example(case).items():
        args += ["--" + key.replace("_", "-"), value]
    row = FORMATS[case["format"]]
    if row.file_only:
        args += ["-o", str(tmp / f"notes{row.extensions[0]}")]
    else:
        args += ["--format", row.name]
    return args


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("user")
    (where / "rmsrun_decl.py").write_text(USER_FILE)
    return where


def test_the_sample_covers_every_pair_of_options():
    covered = set().union(*(_pairs(c) for c in SAMPLE))
    for a, b in itertools.combinations(FACTORS, 2):
        for va, vb in itertools.product(FACTORS[a], FACTORS[b]):
            assert (a, va, b, vb) in covered, (a, va, b, vb)
    assert {c["format"] for c in SAMPLE} == set(FORMATS)  # a new row of the table is sampled
    # most pairs are covered by cases the options accept
    assert sum(_accepted(c) for c in SAMPLE) > len(SAMPLE) / 2


@pytest.mark.parametrize(
    "case", SAMPLE, ids=["-".join(c.values()).replace(USER_SPEC, "user") for c in SAMPLE]
)
def test_every_combination_renders_or_is_refused_by_its_options(case, user_dir, monkeypatch):
    if FORMATS[case["format"]].file_only and shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is missing in CI; .ci/run installs texlive-latex-base")
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base)")
    monkeypatch.chdir(user_dir)
    args = _args(case, user_dir)
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        result.exception,
    )
    assert "Traceback" not in result.output, args
    try:
        _options(case)
    except BnsymError as exc:
        # refused by its options: one line, the options' own message
        assert (result.exit_code, result.output) == (2, f"Error: {exc}\n"), args
        return
    assert result.exit_code == 0, (args, result.output)
    if not FORMATS[case["format"]].file_only:
        assert result.output.strip(), args
    else:
        assert (user_dir / f"notes{FORMATS[case['format']].extensions[0]}").stat().st_size > 0
