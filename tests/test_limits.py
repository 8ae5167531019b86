"""Bounds at every order, and caps that hold (issue 20, item 1): no request runs past its
stated bound.

A request just over a limit — check at orders 2 and 3, with and without --force — is refused
in under a second with the estimate and what to change; a request the estimate admits is
held to its budget while it runs: with the cost models made blind (every estimate 0) and
the budget small, a check stops at the memory cap or the CPU-time cap with one line. The
estimates are compared with what whole processes measure (CPU time and peak memory by the
kernel, os.wait4): they err on the side of refusing.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from bnsym import derive, limits
from bnsym.cli import main
from bnsym.limits import FORCED, LIMIT, LimitError, admit, estimate
from bnsym.notes.formats import FORMATS


def one_line_refusal(args: list[str], *words: str) -> str:
    start = time.perf_counter()
    result = CliRunner().invoke(main, args)
    elapsed = time.perf_counter() - start
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, (args, result.output, result.exception)
    assert lines[0].startswith("Error: ") and all(w in lines[0] for w in words), lines[0]
    assert elapsed < 1.0, (args, elapsed)
    return lines[0]


def largest(ok, above: int = 10**9) -> int:
    """The largest n ≥ 1 with ok(n), by bisection (ok holds below a threshold)."""
    lo, hi = 1, above
    assert ok(lo) and not ok(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("m", [4, 16])
def test_a_check_just_over_the_limit_is_refused_in_under_a_second(order, force, m):
    budget = FORCED if force else LIMIT
    # the check's x holds m·D values for batch norm
    D = largest(lambda d: estimate("check", m, features=d, order=order).within(budget))
    flags = ["--force"] if force else []
    args = ["check", "--m", str(m), "--order", str(order), "--no-torch", *flags]
    line = one_line_refusal([*args, "--features", str(D + 1)], "would take about")
    assert f"--features ≤ {D}" in line  # what to change, exactly the largest that fits
    assert ("what --force allows" in line) == force
    if not force and estimate("check", m, features=D + 1, order=order).within(FORCED):
        assert "or pass --force" in line
    admit("check", m, features=D, order=order, force=force)  # and D itself is admitted


@pytest.mark.parametrize(
    "args, words",
    [
        (["check", "--order", "2", "--features", "2000000"], ["--features ≤"]),
        (["check", "--order", "2", "--features", "99999999999"], ["--features ≤"]),
        (["check", "--order", "3", "--features", "99999999999"], ["--features ≤"]),
        (["check", "--order", "3", "--features", "99999999999", "--force"], ["--force allows"]),
        (["check", "--m", "1024", "--force", "-D", "1"], ["--m ≤"]),
        (["derive", "--m", "1024", "--force", "--format", "json"], ["--m ≤"]),
        (["derive", "--m", "700"], ["--m ≤", "or pass --force"]),
        (["codegen", "--m", "5000", "--force", "--order", "2"], ["--m ≤"]),
        (["check", "--order", "2", "--m", "17"], ["up to m = 16"]),
    ],
)
def test_the_reproducers_of_the_issue_are_refused_in_under_a_second(args, words):
    one_line_refusal(args, *words)


@pytest.mark.parametrize(
    "call",
    [
        lambda: derive(700),
        lambda: derive(5000, force=True),
        lambda: __import__("bnsym").generate(700),
        lambda: __import__("bnsym.crosscheck.first").crosscheck.first.run_check(4, features=10**8),
        lambda: __import__("bnsym.crosscheck.higher").crosscheck.higher.run_check_higher(
            derive(4), 2, features=10**6
        ),
    ],
    ids=["derive", "derive-forced", "generate", "run_check", "run_check_higher"],
)
def test_the_library_entry_points_refuse_before_work(call):
    start = time.perf_counter()
    with pytest.raises(LimitError, match="would take about"):
        call()
    assert time.perf_counter() - start < 1.0


def test_derive_higher_refuses_above_its_m_and_within_the_budget(monkeypatch):
    from bnsym.proofs.higher import derive_higher

    d = derive(4)
    monkeypatch.setattr(limits, "LIMIT", limits.Budget(seconds=0.5, bytes=1e9))
    with pytest.raises(LimitError, match=r"derive\(m=4, order=3\)"):
        derive_higher(d, 3)


# --- the caps: a blind estimate, a small budget, and the process stops at it ---------------

BLIND = """
import sys
import bnsym.limits as L
from bnsym.cli import main
L.LIMIT = L.Budget(seconds=float(sys.argv[1]), bytes=float(sys.argv[2]))
nothing = L.Part("nothing", (), ())
L.COSTS = {key: L.Row((nothing,)) for key in L.COSTS}  # every estimate 0: only the caps hold
main(sys.argv[3:])
"""


def _blind(seconds: float, nbytes: float, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    with subprocess.Popen(
        [sys.executable, "-c", BLIND, str(seconds), str(nbytes), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        _, status, usage = os.wait4(proc.pid, 0)
        out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    done = subprocess.CompletedProcess(args, os.waitstatus_to_exitcode(status), out, err)
    assert time.perf_counter() - start < 120
    return done, usage.ru_utime + usage.ru_stime


def test_a_check_the_estimate_admits_stops_at_the_time_cap():
    done, cpu = _blind(2.0, 1e10, "check", "--order", "2", "--m", "4", "-D", "400", "--no-torch")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("Error: check --m 4 --features 400 --order 2 stopped at the time")
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert cpu < 2.0 + 3.0  # the cap, plus starting Python before it was set


def test_a_check_the_estimate_admits_stops_at_the_memory_cap():
    done, _ = _blind(100.0, 3e8, "check", "--m", "4", "-D", "1000000", "--no-torch")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "stopped at the memory cap (300 MB more" in done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


def test_the_caps_are_lifted_afterwards_and_nested_requests_keep_the_outer_ones():
    before = resource.getrlimit(resource.RLIMIT_DATA)
    with limits.bounded("check", 4, features=3):
        inside = resource.getrlimit(resource.RLIMIT_DATA)
        assert inside[0] != resource.RLIM_INFINITY
        with limits.bounded("derive", 4):
            assert resource.getrlimit(resource.RLIMIT_DATA) == inside
    assert resource.getrlimit(resource.RLIMIT_DATA) == before
    import signal

    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)


# --- the table --------------------------------------------------------------------------------


def test_every_command_and_order_of_the_cli_and_every_format_has_a_cost():
    for name, command in main.commands.items():
        if name == "gradcheck":
            continue  # bounded by its own input sizes (bnsym.gradcheck.arrays)
        order = next(p for p in command.params if p.name == "order")
        highest = int(order.help.split("up to ")[1].split()[0])
        for n in range(1, highest + 1):
            assert (name, n, "rev") in limits.COSTS
    for fmt in FORMATS:  # a new row of the format table is costed (as the dearest, if new)
        assert estimate("derive", 4, fmt=fmt).seconds > estimate("derive", 4).seconds


def test_the_third_orders_cutoff_is_the_proofs_own():
    from bnsym.proofs.higher import THIRD_CLOSED_MAX_M

    assert limits.ORDER_3_CLOSED_MAX_M == THIRD_CLOSED_MAX_M


MEASURED = [
    ["derive", "--m", "64", "--format", "json"],
    ["check", "--m", "4", "-D", "200000", "--no-torch"],
    ["check", "--m", "4", "--order", "2", "-D", "30", "--no-torch"],
]
#: Runs its arguments as a child and prints the child's CPU seconds and peak memory, from a
#: small process: Linux carries a process's peak memory across exec, so a child forked by
#: pytest itself would report pytest's.
PROBE = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "print(os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, usage.ru_maxrss)"
)


def measure(args: list[str]) -> tuple[int, float, float]:
    """Exit status, CPU seconds and peak bytes of ``python -m bnsym ARGS``."""
    probe = [sys.executable, "-c", PROBE, sys.executable, "-m", "bnsym", *args]
    status, cpu, peak = subprocess.run(probe, capture_output=True, text=True).stdout.split()
    return int(status), float(cpu), int(peak) * 1024


@pytest.mark.parametrize("args", MEASURED, ids=lambda a: " ".join(a[:4]))
def test_the_estimate_is_not_below_what_a_process_measures(args):
    status, cpu, peak = measure(args)
    assert status == 0
    m = int(args[args.index("--m") + 1])
    features = int(args[args.index("-D") + 1]) if "-D" in args else None
    order = int(args[args.index("--order") + 1]) if "--order" in args else 1
    fmt = args[args.index("--format") + 1] if "--format" in args else None
    est = estimate(args[0], m, features=features, order=order, fmt=fmt)
    assert peak <= est.bytes, (peak, est)
    assert cpu <= est.seconds * 1.5, (cpu, est)  # CPU time moves with the machine's load


@pytest.mark.parametrize("command", ["derive", "check"])
@pytest.mark.parametrize("m", ["9", "40"])
def test_order_3_with_forward_mode_names_its_own_bound(command, m):
    # the bound a retry must meet: m = 8 with forward mode at order 3, not reverse mode's 16,
    # and no advice about another command
    line = one_line_refusal([command, "--modes", "fwd", "--order", "3", "--m", m], "m = 8")
    assert "16" not in line and "codegen" not in line
    from bnsym.proofs.modes import THIRD_FORWARD_MAX_M

    assert THIRD_FORWARD_MAX_M == limits.THIRD_FORWARD_MAX_M == 8
