"""Random command lines, valid and not, against odd output targets: every one ends in exit 0
(1 for a failed check) with sane output, or exit 2 with one line ``Error: …``; never a
traceback, a warning, a temporary file left behind, or a damaged file.

In-process (CliRunner) and derandomized, so CI runs the same examples every time in about
half a minute. Every target lives in a fresh temporary directory, the current directory
during the run; the FIFO has a reader of its own, so writing to it never blocks.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
import warnings
from pathlib import Path

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
VALUES = {
    "--m": st.one_of(
        st.sampled_from(["2", "3", "4", "1", "0", "-2", "1025", "99999999999"]), _ODD_TEXT
    ),
    "--eps": st.one_of(
        NUMBERS, st.sampled_from(["1000000000e300", "1e99999", "nan", "inf"]), _ODD_TEXT
    ),
    "--variance": st.sampled_from(["biased", "unbiased", "", "Biased", "é"]),
    "--eps-placement": st.sampled_from(["inside", "outside", "in"]),
    "--mode": st.sampled_from(["train", "eval", "test"]),
    "--values": st.one_of(
        st.lists(NUMBERS, min_size=1, max_size=5).map(",".join),
        st.sampled_from(["2,0,2,4", "1,2;3,4", "3,3,3,3", "1,2,3,4;5,6,7,8"]),
        _ODD_TEXT,
    ),
    "--dy": st.one_of(st.sampled_from(["1,0,0,0", "1,2", "0,0"]), _ODD_TEXT),
    "--format": st.sampled_from(["text", "json", "latex", "markdown", "pdf", "html", ""]),
    "--features": st.sampled_from(["1", "3", "0", "-1", "x", "99999999999"]),
    "--seed": st.sampled_from(["0", "7", "-1", "2**64", "18446744073709551616"]),
}
FLAGS = {
    "derive": ["--ascii", "--standalone", "--no-affine", "--force"],
    "codegen": ["--no-affine", "--force"],
    "check": ["--no-affine", "--no-torch", "--torch"],
}
OPTIONS = {
    "derive": [
        "--m",
        "--eps",
        "--variance",
        "--eps-placement",
        "--mode",
        "--values",
        "--dy",
        "--format",
    ],
    "codegen": ["--m", "--eps", "--variance", "--eps-placement", "--mode"],
    "check": ["--m", "--eps", "--variance", "--eps-placement", "--mode", "--features", "--seed"],
}
EXTENSIONS = [".txt", ".json", ".tex", ".md", ".py", ".pdf", ""]
#: What -o names; made afresh for every example by _targets.
TARGETS = [
    "new", "existing", "protected", "directory", "fifo", "socket", "dangling-link",
    "link-loop", "missing-dir", "file-as-dir", "long", "newline", "unicode", "dash",
]  # fmt: skip


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(["derive", "codegen", "check"]))
    args = [command]
    for option in draw(st.lists(st.sampled_from(OPTIONS[command]), unique=True, max_size=4)):
        args += [option, draw(VALUES[option])]
    args += draw(st.lists(st.sampled_from(FLAGS[command]), unique=True, max_size=2))
    if command == "check" and "--m" not in args:
        args += ["--m", "2"]
    i = args.index("--m") + 1 if "--m" in args else None
    with contextlib.suppress(ValueError):
        if i is not None and 8 < int(args[i]) <= 1024:  # valid, but seconds to minutes each
            args[i] = "1025"
    target = None
    if command != "check" and draw(st.integers(0, 3)):
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


@settings(
    max_examples=250,
    database=None,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=command_lines())
def test_every_command_line_ends_in_a_result_or_one_line(fifo_dir, monkeypatch, case) -> None:
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
        assert result.exit_code in ((0, 1) if args[0] == "check" else (0,)), (args, result.output)
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
