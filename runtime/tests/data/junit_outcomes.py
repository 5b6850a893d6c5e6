"""Reads a Provium JUnit report the way dashboards do and checks what each outcome shows.

Usage: junit_outcomes.py REPORT
junitparser (a real JUnit consumer) reads the report; the checks are what Jenkins, GitLab and
GitHub reporters take from it: class names, result kinds and messages, per-case output, times.
"""
import sys

from junitparser import Error, Failure, JUnitXml, Skipped

report = JUnitXml.fromfile(sys.argv[1])
suites = {s.name: s for s in report}
cases = {(s.name, c.name): c for s in report for c in s}


def case(suite, name):
    assert (suite, name) in cases, f"no {suite}::{name} in {sorted(cases)}"
    return cases[(suite, name)]


def result(c):
    kinds = [type(r) for r in c.result]
    for k, label in ((Failure, "failure"), (Error, "error"), (Skipped, "skipped")):
        if k in kinds:
            return label, c.result[0]
    return "passed", None


def out(c):
    return c.system_out or ""


# Jenkins splits a classname at its last dot into package and class: directory and file.
for (suite, name), c in cases.items():
    assert "." not in c.classname.rsplit(".", 1)[-1], c.classname
o = "a_outcomes.lua"
assert case(o, "passes").classname == "a_outcomes_lua", case(o, "passes").classname
assert case("my suite", "close(-1) is EBADF").classname == "specs.b_spec_yaml"

# Output is byte-faithful: tabs survive, escape sequences are visible, not dropped.
assert "col1\tcol2" in out(case(o, "passes")), repr(out(case(o, "passes")))
assert "\\x1b[1mbold" in out(case(o, "passes")), repr(out(case(o, "passes")))

want = {
    "passes": ("passed", None),
    "fails": ("failure", "expected"),
    "errors": ("error", "boom"),
    "skips": ("skipped", "not here"),
    "todos": ("skipped", "todo: write it"),
    "xfails": ("skipped", "xfail: known bug"),
    "crashes the kernel": ("error", "Kernel panic - not syncing: sysrq triggered crash ("),
    "after the crash": ("skipped", "not run: "),
}
for name, (kind, message) in want.items():
    got, r = result(case(o, name))
    assert got == kind, f"{name}: {got}, expected {kind}"
    if message:
        assert message in (r.message or ""), f"{name}: message {r.message!r}"
assert result(case(o, "todos"))[1].type == "todo"
assert result(case(o, "after the crash"))[1].type == "not_run"

# The panic's console is on the test that crashed, headed by what happened.
crash = out(case(o, "crashes the kernel"))
assert crash.startswith("--- kernel panic: guest console ---"), crash
assert "Kernel panic - not syncing" in crash, crash

# A timeout's console is on the test that was running.
t = "c_timeout.lua"
got, r = result(case(t, "blocks"))
assert got == "error" and "timed out" in r.message, (got, r.message)
assert "--- timed out: guest console ---" in out(case(t, "blocks")), out(case(t, "blocks"))
assert result(case(t, "never reached"))[0] == "skipped"

# Batched spec cases get their share of the batch's time, not zero.
batched = [c for (s, _), c in cases.items() if s == "my suite"]
assert len(batched) == 4, len(batched)
assert all(c.time > 0 for c in batched), [c.time for c in batched]
assert suites["my suite"].tests == 4

print("junit outcomes ok:", len(cases), "cases")
