"""Output never damages what is there, the command line is escaped in every format, every
input ends in a result or one line, and every cost is bounded before work starts."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnsym import derive
from bnsym import output as _io
from bnsym.cli import main
from bnsym.core.options import DerivationError
from bnsym.output import OutputError, atomic_write


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(result, *words: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# --- what is at the target -------------------------------------------------------------------


def test_a_fifo_is_written_through_and_stays_a_fifo(tmp_path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = run("derive", "--m", "2", "-o", str(fifo))
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert b'"m": 2' in received[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.json"]


def test_a_character_device_is_written_through_not_replaced(tmp_path) -> None:
    # A private /dev/null (char 1:3): what `-o /dev/null` meets, without touching the real one.
    null = tmp_path / "null.txt"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    result = run("derive", "--m", "2", "-o", str(null))
    assert result.exit_code == 0, result.output
    st = null.lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null.txt"]


def test_a_link_to_a_device_is_written_through(tmp_path) -> None:
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    link = tmp_path / "out.txt"
    link.symlink_to(null)
    assert run("derive", "--m", "2", "-o", str(link)).exit_code == 0
    assert link.is_symlink() and stat.S_ISCHR(null.lstat().st_mode)


@pytest.mark.parametrize("kind", ["socket", "directory", "block device"])
def test_a_socket_directory_or_disk_is_refused_and_left_alone(tmp_path, kind) -> None:
    target = tmp_path / "t.txt"
    if kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(target))
    elif kind == "directory":
        target.mkdir()
    else:
        os.mknod(target, 0o600 | stat.S_IFBLK, os.makedev(7, 200))
    before = target.lstat()
    one_line_error(run("derive", "--m", "2", "-o", str(target)), repr(str(target)), kind)
    after = target.lstat()
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_a_write_protected_file_is_refused_even_for_root(tmp_path) -> None:
    # Root passes every access check; the mode bits say what the owner meant (see _io).
    target = tmp_path / "keep.txt"
    target.write_text("precious\n")
    target.chmod(0o444)
    one_line_error(run("derive", "--m", "2", "-o", str(target)), "write-protected")
    assert target.read_text() == "precious\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o444


def test_an_ordinary_user_is_asked_what_the_os_says(tmp_path, monkeypatch) -> None:
    target = tmp_path / "theirs.txt"
    target.write_text("theirs\n")
    monkeypatch.setattr(_io.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(_io.os, "access", lambda path, mode: Path(path) != target)
    with pytest.raises(OutputError, match="write-protected"):
        atomic_write(target, "x\n")
    assert target.read_text() == "theirs\n"


def test_owner_group_and_mode_of_a_replaced_file_are_kept(tmp_path) -> None:
    target = tmp_path / "shared.txt"
    target.write_text("old\n")
    os.chown(target, 4321, 8765)
    target.chmod(0o640)
    atomic_write(target, "new\n")
    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 8765, 0o640)
    assert target.read_text() == "new\n"


def test_data_reaches_the_disk_before_the_rename(tmp_path, monkeypatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(_io.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        _io.os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1]
    )
    atomic_write(tmp_path / "a.txt", "x\n")
    assert calls[:2] == ["fsync", "replace"]


@pytest.mark.parametrize("name", ["loop", "long", "nul"])
def test_odd_names_are_one_line(tmp_path, monkeypatch, name) -> None:
    monkeypatch.chdir(tmp_path)
    if name == "loop":
        Path("a.txt").symlink_to("b.txt")
        Path("b.txt").symlink_to("a.txt")
        target, words = "a.txt", "symbolic links"
    elif name == "long":
        target, words = "x" * 300 + ".txt", "File name too long"
    else:
        target, words = "a\0b.txt", "NUL"
    for command in ("derive", "codegen"):
        one_line_error(run(command, "--m", "2", "-o", target), words)


def test_a_dangling_link_creates_the_file_it_names(tmp_path) -> None:
    link = tmp_path / "out.txt"
    link.symlink_to(tmp_path / "real.txt")
    assert run("derive", "--m", "2", "-o", str(link)).exit_code == 0
    assert link.is_symlink() and (tmp_path / "real.txt").read_text().startswith("Batch")


# --- temporary files on every exit path ------------------------------------------------------

_SLOW_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from bnsym import output as _io
    real = os.fsync
    def slow(fd):  # hold the temporary file open, so the signal arrives mid-write
        print("writing", flush=True)
        time.sleep(60)
    _io.os.fsync = slow
    from bnsym.cli import main
    main(["codegen", "--m", "2", "-o", sys.argv[1]])
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_a_signal_mid_write_leaves_no_temporary_file(tmp_path, signum) -> None:
    target = tmp_path / "bn.py"
    target.write_text("old\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "writing\n"
    assert len(list(tmp_path.iterdir())) == 2  # the target and the temporary file
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == 128 + signum
    assert [p.name for p in tmp_path.iterdir()] == ["bn.py"]
    assert target.read_text() == "old\n"


def test_a_temporary_file_left_by_sigkill_is_removed_by_the_next_write(tmp_path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".bn.py.abc123_x.{dead.pid}.bnsym-tmp"
    live = tmp_path / f".bn.py.def456_y.{os.getpid()}.bnsym-tmp"  # a writer still at work
    stale.write_text("partial")
    live.write_text("partial")
    atomic_write(tmp_path / "bn.py", "x = 1\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bn.py", live.name])


# --- the command line in generated files -----------------------------------------------------


def test_a_newline_in_the_file_name_cannot_inject_latex(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.tex").write_text("SECRET-CONTENT\n")
    name = "n\n\\input{secret}\n\\iffalse.tex"
    result = run("derive", "--m", "2", "--standalone", "-o", name)
    assert result.exit_code == 0, result.output
    tex = (tmp_path / name).read_text()
    # Every line that holds the command is a comment, or text with the backslash escaped.
    assert not any(line.startswith("\\input") for line in tex.splitlines())
    assert "\\textbackslash{}input" in tex
    pdf = run("derive", "--m", "2", "-o", "n\n\\input{secret}\n.pdf")
    assert pdf.exit_code == 0, pdf.output
    assert b"SECRET-CONTENT" not in (tmp_path / "n\n\\input{secret}\n.pdf").read_bytes()


def test_a_file_name_cannot_inject_markdown_or_html(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = "a`<b onclick=alert(1)>\n\n<img src=x onerror=alert(1)>`.md"
    assert run("derive", "--m", "2", "-o", name).exit_code == 0
    md = (tmp_path / name).read_text()
    made = [line for line in md.splitlines() if line.startswith("Made by")]
    assert len(made) == 1 and "<img" not in md.replace(made[0], "")
    # One code span, fenced by more backticks than the name holds in a row.
    assert made[0].startswith("Made by `` bnsym derive") and made[0].endswith("`` with bnsym.")


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "é.pdf"],
        ["--m", "４", "-o", "ж.tex", "--standalone"],
        ["--m", "2", "--values", "１,2", "-o", "notes.pdf"],
    ],
    ids=["pdf", "latex", "values"],
)
def test_non_ascii_command_lines_compile(tmp_path, monkeypatch, args) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("derive", *(["--m", "2"] if "--m" not in args else []), *args)
    assert result.exit_code == 0, (result.output, result.exception)
    written = next(tmp_path.iterdir())
    if written.suffix == ".pdf":
        assert written.read_bytes().startswith(b"%PDF")
    else:
        assert "U+FF14" in written.read_text()


# --- bounds and library errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["codegen", "--eps", "1000000000e300"], "no float64 value"),
        (["check", "--eps", "1000000000e300", "--no-torch"], "no float64 value"),
        (["codegen", "--eps", "0.0000000000000000000000001e-300"], "no float64 value"),
        (["check", "--m", "2", "--features", "99999999999"], "TB (mostly the check's arrays)"),
        (["derive", "--m", "99999999999999999999999", "--force"], "even with --force"),
        (["derive", "--m", "9" * 5000], "even with --force"),
        (["derive", "--m", "5000", "--force"], "above what --force allows"),
        (["derive", "--m", "4", "--values", ";".join(["1,2,3,4"] * 300)], "fewer features"),
    ],
)
def test_a_costly_or_unrepresentable_input_is_refused_before_work(args, words) -> None:
    start = time.perf_counter()
    one_line_error(run(*args), words)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("flag", ["affine", "force"])
@pytest.mark.parametrize("value", ["no", 0, None, "False"])
def test_a_flag_must_be_a_bool(flag, value) -> None:
    with pytest.raises(DerivationError, match=f"^{flag} must be True or False"):
        derive(4, **{flag: value})


@pytest.mark.parametrize(
    "kw, words", [({"features": 0}, "features must be"), ({"seed": -1}, "seed must be")]
)
def test_run_check_names_a_bad_argument(kw, words) -> None:
    from bnsym.crosscheck.first import run_check

    with pytest.raises(ValueError, match=words):
        run_check(2, **kw)


def test_a_passing_check_prints_no_numpy_warning() -> None:
    # σ + ε = 1e300 squared overflows to inf on the way to a correct (zero) limit.
    with warnings.catch_warnings(record=True) as caught:  # pytest would hide them
        warnings.simplefilter("always")
        result = run("check", "--eps", "1e300", "--eps-placement", "outside", "--no-torch")
    assert result.exit_code == 0, result.output
    assert [str(w.message) for w in caught] == []
    assert "Warning" not in result.output


@pytest.mark.parametrize("what", ["values", "dy"])
def test_examples_that_are_not_sequences_are_named(what) -> None:
    kw = {"values": "1,2,3,4", what: 5}
    with pytest.raises(DerivationError, match=f"^{what} must be a string such as"):
        derive(4, **kw)


def test_dev_stdout_is_written_through_to_the_pipe() -> None:
    # /dev/stdout -> /proc/self/fd/1 -> a pipe here: written into, as `> /dev/stdout` would.
    done = subprocess.run(
        [sys.executable, "-m", "bnsym", "derive", "--m", "2", "--format", "json"]
        + ["-o", "/dev/stdout"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("{") and '"m": 2' in done.stdout


_SLOW_LATEX = textwrap.dedent(
    """
    import sys, time
    from bnsym.notes import pdf as notes
    def slow(source, timeout):  # pdflatex "running" in its temporary directory
        print("compiling", flush=True)
        time.sleep(60)
    notes._run_pdflatex = slow
    from bnsym.cli import main
    main(["derive", "--m", "2", "-o", sys.argv[1]])
    """
)


def test_sigterm_during_pdflatex_removes_its_temporary_directory(tmp_path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_LATEX, str(tmp_path / "notes.pdf")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert proc.stdout is not None and proc.stdout.readline() == "compiling\n"
    assert len(list(scratch.iterdir())) == 1  # bnsym-latex-…
    proc.terminate()
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(scratch.iterdir()) == [] and not (tmp_path / "notes.pdf").exists()


@pytest.mark.parametrize("ext", [".tex", ".pdf"])
def test_latex_too_wide_for_tex_is_refused_before_writing(tmp_path, ext) -> None:
    # Numbers of ~600 digits make rows wider than TeX's \maxdimen ("Dimension too large").
    target = tmp_path / f"notes{ext}"
    args = ["derive", "--m", "4", "--values", "1e300,1e-300,1,2", "--eps", "1e-300"]
    one_line_error(run(*args, "-o", str(target)), "beyond what TeX can measure", "fewer digits")
    assert list(tmp_path.iterdir()) == []
    assert run(*args, "--format", "json").exit_code == 0  # the exact results are still there


@pytest.mark.parametrize(
    "call, words",
    [
        (
            lambda d: __import__("bnsym.notes.latex").notes.latex.to_latex(d, command=5),
            "command must be",
        ),
        (
            lambda d: __import__("bnsym.notes.latex").notes.latex.to_markdown(d, command=5),
            "command must be",
        ),
        (lambda d: __import__("bnsym").generate(d, command=b"x"), "command must be"),
        (lambda d: atomic_write(5, "x"), "path must be a file name"),  # type: ignore[arg-type]
    ],
    ids=["to_latex", "to_markdown", "generate", "atomic_write"],
)
def test_library_type_errors_name_the_argument(call, words) -> None:
    with pytest.raises(TypeError, match=words):
        call(derive(2))


def test_another_users_writable_file_is_written_in_place_keeping_its_owner(
    tmp_path, monkeypatch
) -> None:
    # An ordinary user (uid 1000) may write a group-writable file of root's, as `>` would;
    # a rename would hand it to uid 1000, so it is written in place: same inode, same owner.
    target = tmp_path / "team.txt"
    target.write_text("old\n")
    before = target.stat()
    monkeypatch.setattr(_io.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(_io.os, "access", lambda path, mode: True)
    atomic_write(target, "new\n")
    after = target.stat()
    assert target.read_text() == "new\n"
    assert (after.st_ino, after.st_uid) == (before.st_ino, before.st_uid)
