"""Atomic output: any OSError is one OutputError naming the path, and no file is left behind."""

from __future__ import annotations

import os
import stat

import pytest
from click.testing import CliRunner

from bnsym import output as _io
from bnsym.cli import main
from bnsym.output import OutputError, atomic_write


def _refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


def test_mkstemp_failure_is_an_output_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_io.tempfile, "mkstemp", _refuse)
    target = tmp_path / "bn.py"
    with pytest.raises(OutputError, match=r"^cannot write '.*bn\.py': Permission denied\.$"):
        atomic_write(target, "x = 1\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [["codegen", "--m", "3"], ["derive", "--m", "2"]],
    ids=["codegen", "derive"],
)
def test_cli_reports_an_unwritable_path_in_one_line(tmp_path, monkeypatch, args) -> None:
    monkeypatch.setattr(_io.tempfile, "mkstemp", _refuse)
    target = tmp_path / ("out.py" if args[0] == "codegen" else "out.txt")
    result = CliRunner().invoke(main, [*args, "-o", str(target)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0] == f"Error: cannot write {str(target)!r}: Permission denied."
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rename_leaves_no_temporary_file(tmp_path, monkeypatch) -> None:
    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_io.os, "replace", fail)
    with pytest.raises(OutputError, match="No space left on device"):
        atomic_write(tmp_path / "bn.py", "x = 1\n")
    assert list(tmp_path.iterdir()) == []


def test_read_only_directory(tmp_path, monkeypatch) -> None:
    # The permission bits are what an ordinary user meets; root (as in CI) writes anyway, so
    # the access check itself is what is exercised here.
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    monkeypatch.setattr(_io.os, "access", lambda path, mode: False)
    try:
        result = CliRunner().invoke(main, ["codegen", "--m", "2", "-o", str(locked / "bn.py")])
        assert result.exit_code == 2, result.output
        assert "not writable" in result.output
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_a_pseudo_filesystem_is_an_output_error() -> None:
    # /proc accepts no new files, even from root: the OSError comes from mkstemp itself.
    result = CliRunner().invoke(main, ["codegen", "--m", "2", "-o", "/proc/bnsym-test.py"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: cannot write '/proc/bnsym-test.py'")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_mode_of_an_existing_file_is_kept_and_a_new_one_follows_the_umask(tmp_path) -> None:
    existing = tmp_path / "run.py"
    existing.write_text("old\n")
    existing.chmod(0o750)
    atomic_write(existing, "new\n")
    assert stat.S_IMODE(existing.stat().st_mode) == 0o750
    assert existing.read_text() == "new\n"

    old = os.umask(0o077)
    try:
        fresh = atomic_write(tmp_path / "fresh.py", "x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    # with the usual umask, what open() would give: 0o666 & ~umask
    fresh2 = atomic_write(tmp_path / "fresh2.py", "x\n")
    assert stat.S_IMODE(fresh2.stat().st_mode) == 0o666 & ~old


def test_a_link_is_written_through_not_replaced(tmp_path) -> None:
    real = tmp_path / "real.py"
    real.write_text("old\n")
    link = tmp_path / "link.py"
    link.symlink_to(real)
    atomic_write(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"


def test_a_file_in_the_way_of_the_directory_is_named(tmp_path) -> None:
    blocker = tmp_path / "notadir"
    blocker.write_text("")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        atomic_write(blocker / "x.py", "x\n")
