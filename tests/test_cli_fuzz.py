"""Random command lines, valid and not, against odd output targets: every one ends in exit 0
(1 for a failed check) with sane output, or exit 2 with one line ``Error: …``; never a
traceback, a warning, a temporary file left behind, or a damaged file.

The option pools are generated from the click command definitions (:func:`option_pools`):
every option of every command is drawn — from the values worth trying for it in
:data:`KNOWN`, else from its click type (choices, ranges, flags), else from :data:`GENERIC` —
so a new option is fuzzed the day it is added (and a test says which options have no values
of their own yet).

In-process (CliRunner) and derandomized (a fixed seed), so CI runs the same examples every
time, within :data:`BUDGET` seconds: the examples after the budget are not run. Every target
lives in a fresh temporary directory, the current directory during the run; the FIFO has a
reader of its own, so writing to it never blocks.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
import time
import warnings
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bnsym.cli import main

#: Odd but finite text: digits of other scripts, specials of TeX and shells, controls.
_ODD_TEXT = st.text(
    alphabet=st.sampled_from(list("0123456789.,;-+e/ x\\{}%$`<>\n\t\x00éж４１")),
    max_size=12,
)

NUMBERS = st.sampled_from(["0", "1e-5", "0.1", "1/3", "8.9", "-1", "1e300", "1e-300"])
#: Values worth trying, by option name, for options whose click type says little (strings).
#: m above 8 is valid but takes seconds to minutes: the pool's large m are refused by the
#: bounds even with --force (bnsym.limits).
KNOWN = {
    "--m": st.one_of(
        st.sampled_from(["2", "3", "4", "1", "0", "-2", "100000", "99999999999"]), _ODD_TEXT
    ),
    "--eps": st.one_of(
        NUMBERS, st.sampled_from(["1000000000e300", "1e99999", "nan", "inf"]), _ODD_TEXT
    ),
    "--variance": st.sampled_from(["biased", "unbiased", "", "Biased", "é"]),
    "--eps-placement": st.sampled_from(["inside", "outside", "sqrt-outside", "in"]),
    "--mode": st.sampled_from(["train", "eval", "test"]),
    "--layer": st.sampled_from(
        [
            "batchnorm",
            "layernorm",
            "instancenorm",
            "groupnorm",
            "rmsnorm",
            "nope",
            "os:path",
            "nofile.py:x",
            "",
        ]
    ),  # fmt: skip
    "--channels": st.sampled_from(["1", "2", "3", "0", "-1", "x", "99999999999"]),
    "--values": st.one_of(
        st.lists(NUMBERS, min_size=1, max_size=5).map(",".join),
        st.sampled_from(["2,0,2,4", "1,2;3,4", "3,3,3,3", "1,2,3,4;5,6,7,8"]),
        _ODD_TEXT,
    ),
    "--dy": st.one_of(st.sampled_from(["1,0,0,0", "1,2", "0,0"]), _ODD_TEXT),
    "--gamma": st.one_of(st.sampled_from(["1", "2,3", "1,2,3,4", "0"]), _ODD_TEXT),
    "--beta": st.one_of(st.sampled_from(["0", "1,1", "1,2,3,4"]), _ODD_TEXT),
    "--running-mean": st.one_of(st.sampled_from(["0", "1", "1,2"]), _ODD_TEXT),
    "--running-var": st.one_of(st.sampled_from(["1", "0", "-1", "2,3"]), _ODD_TEXT),
    "--format": st.sampled_from(["text", "json", "latex", "markdown", "pdf", "html", ""]),
    "--order": st.sampled_from(["1", "2", "3", "0", "4", "x", ""]),
    # features and seed are click ranges; these add the sizes the bounds must refuse
    "--features": st.sampled_from(["1", "3", "0", "-1", "x", "99999999999"]),
    "--seed": st.sampled_from(["0", "7", "-1", "2**64", "18446744073709551616"]),
    "--input": st.sampled_from(["4,3", "3", "", "int:0-9:4", "0", "-1", "x", "nofile.npy"]),
}
#: For an option no row of KNOWN names and whose type says nothing: plausible words and junk.
GENERIC = st.one_of(
    st.sampled_from(["1", "0", "-1", "2,3", "fwd", "rev", "fwd,rev", "text", "all", ""]),
    _ODD_TEXT,
)
#: The functions gradcheck loads: a working pair and specs that are not.
SPECS = st.sampled_from(
    ["bnsym.reference:batchnorm_forward", "bnsym.reference:batchnorm_backward", "math:sqrt",
     "nomodule:f", "bnsym:nothing", "x", "bnsym.reference"]
)  # fmt: skip


def _type_pool(param: click.Option) -> st.SearchStrategy[str] | None:
    """Values from a click type: its choices, or the edges of its range, with junk."""
    kind = param.type
    if isinstance(kind, click.Choice):
        return st.sampled_from([*map(str, kind.choices), "", "X"])
    if isinstance(kind, click.IntRange):
        low = kind.min if kind.min is not None else 0
        return st.sampled_from([str(low), str(low + 1), str(low - 1), "3", "x", "99999999999"])
    if kind is click.FLOAT:
        return st.sampled_from(["0", "1e-3", "-1", "nan", "inf", "x"])
    return None


def option_pools() -> dict[str, tuple[dict[str, st.SearchStrategy[str]], list[str]]]:
    """For each command: option name -> its pool of values, and its flags (on and off)."""
    pools = {}
    for name, command in main.commands.items():
        values: dict[str, st.SearchStrategy[str]] = {}
        flags: list[str] = []
        for param in command.params:
            if not isinstance(param, click.Option) or param.name == "output":
                continue  # -o is drawn with the odd targets below
            if param.is_flag:
                flags += [*param.opts, *param.secondary_opts]
                continue
            option = max(param.opts, key=len)
            drawn = [p for p in (KNOWN.get(option), _type_pool(param)) if p is not None]
            values[option] = st.one_of(*drawn) if drawn else GENERIC
        pools[name] = (values, flags)
    return pools


POOLS = option_pools()
#: The whole test stops drawing new command lines after this many seconds (CI's budget).
BUDGET = 90.0
EXTENSIONS = [".txt", ".json", ".tex", ".md", ".py", ".pdf", ".html", ""]
#: What -o names; made afresh for every example by _targets.
TARGETS = [
    "new", "existing", "protected", "directory", "fifo", "socket", "dangling-link",
    "link-loop", "missing-dir", "file-as-dir", "long", "newline", "unicode", "dash",
]  # fmt: skip


def test_every_option_of_every_command_is_drawn():
    for name, command in main.commands.items():
        values, flags = POOLS[name]
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "output":
                drawn = param.is_flag and all(o in flags for o in param.opts)
                assert drawn or max(param.opts, key=len) in values, (name, param.opts)
    # options with no values of their own are drawn from GENERIC: name them, to add a row
    generic = {o for v, _ in POOLS.values() for o, pool in v.items() if pool is GENERIC}
    print("options drawn from GENERIC only:", sorted(generic) or "none")


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(sorted(POOLS)))
    values, flags = POOLS[command]
    args = [command]
    if command == "gradcheck":
        args += [draw(SPECS), draw(SPECS)]
    for option in draw(st.lists(st.sampled_from(sorted(values)), unique=True, max_size=5)):
        args += [option, draw(values[option])]
        if option == "--input":  # several inputs, as batchnorm_forward takes x, gamma, beta
            for _ in range(draw(st.integers(0, 2))):
                args += [option, draw(values[option])]
    args += draw(st.lists(st.sampled_from(flags), unique=True, max_size=2)) if flags else []
    if command == "gradcheck" and "--input" not in args:
        args += ["--input", "4,3", "--input", "3", "--input", "3"]
    if command == "check" and "--m" not in args:
        args += ["--m", "2"]
    target = None
    has_output = any(p.name == "output" for p in main.commands[command].params)
    if has_output and draw(st.integers(0, 3)):
        target = draw(st.sampled_from(TARGETS))
        ext = draw(st.sampled_from(EXTENSIONS if command == "derive" else [".py", ".txt"]))
        args += ["-o", f"@{target}{ext}"]  # replaced by the path once the directory exists
    return args, target


def _fifo_reader(path: Path, stop: threading.Event) -> None:
    """Drain the FIFO for as long as the test runs, so that a writer never blocks."""
    while not stop.is_set():
        with contextlib.suppress(OSError), open(path, "rb") as f:
            f.read()


def _make(tmp: Path, name: str, ext: str) -> str:
    """Create the target ``name`` in ``tmp``; return the -o argument for it."""
    if name == "new":
        return str(tmp / f"new{ext}")
    if name == "existing":
        (tmp / f"existing{ext}").write_text("old\n")
        return f"existing{ext}"
    if name == "protected":
        p = tmp / f"protected{ext}"
        p.write_text("old\n")
        p.chmod(0o444)
        return str(p)
    if name == "directory":
        (tmp / f"dir{ext}").mkdir()
        return f"dir{ext}"
    if name == "fifo":
        return "fifo.txt"  # made once, with its reader, by the test
    if name == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(f"sock{ext}")
        sock.close()
        return f"sock{ext}"
    if name == "dangling-link":
        os.symlink(f"target{ext}", f"link{ext}")
        return f"link{ext}"
    if name == "link-loop":
        os.symlink(f"b{ext}", f"a{ext}")
        os.symlink(f"a{ext}", f"b{ext}")
        return f"a{ext}"
    if name == "missing-dir":
        return f"no/such/dir/out{ext}"
    if name == "file-as-dir":
        (tmp / "plain").write_text("")
        return f"plain/out{ext}"
    if name == "long":
        return "x" * 300 + ext
    if name == "newline":
        return f"a\n\\input{{s}}\n`<b>`{ext}"
    if name == "unicode":
        return f"é４{ext}"
    return "-"


def _snapshot(tmp: Path) -> dict[str, tuple[int, bytes | None]]:
    out = {}
    for p in tmp.rglob("*"):
        st_ = p.lstat()
        data = p.read_bytes() if stat.S_ISREG(st_.st_mode) else None
        out[str(p.relative_to(tmp))] = (stat.S_IFMT(st_.st_mode), data)
    return out


@pytest.fixture
def fifo_dir(tmp_path):
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    stop = threading.Event()
    reader = threading.Thread(target=_fifo_reader, args=(fifo, stop), daemon=True)
    reader.start()
    yield tmp_path
    stop.set()
    with contextlib.suppress(OSError):  # wake the reader
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    reader.join(timeout=5)


_DEADLINE = [time.monotonic() + BUDGET]


@pytest.fixture(scope="module", autouse=True)
def _budget():
    _DEADLINE[0] = time.monotonic() + BUDGET


@settings(
    max_examples=300,
    database=None,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=command_lines())
def test_every_command_line_ends_in_a_result_or_one_line(fifo_dir, monkeypatch, case) -> None:
    if time.monotonic() > _DEADLINE[0]:
        return  # past the budget: the rest of the fixed sequence is not run
    args, target = case
    work = fifo_dir / f"case{len(list(fifo_dir.iterdir()))}"
    work.mkdir()
    (work / "s.tex").write_text("SECRET\n")
    monkeypatch.chdir(work)
    if target is not None:
        i = args.index("-o") + 1
        ext = args[i][len(target) + 1 :]
        args[i] = _make(work, target, ext) if target != "fifo" else str(fifo_dir / "fifo.txt")
    before = _snapshot(work)
    with warnings.catch_warnings(record=True) as caught:  # pytest would hide them
        warnings.simplefilter("always")
        result = CliRunner().invoke(main, args)
    assert not [str(w.message) for w in caught], args
    event(f"{args[0]} exit {result.exit_code}, -o {target}")

    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        result.exception,
    )
    assert "Traceback" not in result.output and "Warning" not in result.output, args
    if result.exit_code == 2:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (args, result.output)
    else:
        failed = (0, 1) if args[0] in ("check", "gradcheck") else (0,)  # 1: a check failed
        assert result.exit_code in failed, (args, result.output)
    after = _snapshot(work)
    assert not [p for p in after if p.endswith(".bnsym-tmp")], (args, after.keys())
    out = args[args.index("-o") + 1] if target is not None else None
    for path, (kind, data) in before.items():
        # Nothing already there changes type; only the -o target may change its content.
        assert after[path][0] == kind, (args, path)
        if data is not None and (work / path) != (work / out if out else None):
            assert after[path][1] == data, (args, path)
    if result.exit_code == 0 and target in ("new", "existing", "unicode", "newline"):
        written = (work / out).read_bytes()  # an absolute `out` replaces `work`
        assert written and written != b"old\n" and b"SECRET" not in written, args
