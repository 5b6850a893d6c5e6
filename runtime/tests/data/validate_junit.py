"""Reads a Provium JUnit report with junitparser (a real JUnit consumer) and checks it.

Usage: validate_junit.py REPORT EXPECTED_JSON
EXPECTED_JSON maps suite name -> {"tests": n, "failures": n, "errors": n, "skipped": n,
"cases": {case name: "passed"|"failure"|"error"|"skipped"}}.
"""
import json
import sys

from junitparser import Error, Failure, JUnitXml, Skipped

report = JUnitXml.fromfile(sys.argv[1])
expected = json.loads(sys.argv[2])
suites = {s.name: s for s in report}
assert set(suites) == set(expected), f"suites {sorted(suites)} != {sorted(expected)}"
for name, want in expected.items():
    suite = suites[name]
    for key in ("tests", "failures", "errors", "skipped"):
        got = getattr(suite, key)
        assert got == want[key], f"{name}: {key} = {got}, expected {want[key]}"
    seen = set()
    for case in suite:
        assert case.name not in seen, f"{name}: duplicate test case {case.name!r}"
        seen.add(case.name)
        # The file's path as a dotted class name: directories are packages, the file the class.
        path = {p.name: p.value for p in suite.properties()}["file"]
        while path.startswith("./"):
            path = path[2:]
        dotted = ".".join(part.replace(".", "_") for part in path.split("/") if part)
        assert case.classname == dotted, f"{case.name}: classname {case.classname!r}"
        assert case.time is not None and case.time >= 0
        kinds = [type(r) for r in case.result]
        if not kinds:
            status = "passed"
        elif Failure in kinds:
            status = "failure"
        elif Error in kinds:
            status = "error"
        elif Skipped in kinds:
            status = "skipped"
        else:
            status = "unknown"
        if case.name in want["cases"]:
            assert status == want["cases"][case.name], f"{name}::{case.name}: {status}"
        for r in case.result:
            assert r.message, f"{name}::{case.name}: result without message"
        assert case._elem.get("file") and case._elem.get("line"), f"{case.name}: no file/line"
    props = {p.name: p.value for p in suite.properties()} if want.get("vm") else {}
    for key in want.get("vm", []):
        assert props.get(key), f"{name}: property {key} missing"
total = sum(w["tests"] for w in expected.values())
assert report.tests == total, f"total tests {report.tests} != {total}"
print("junit ok:", len(suites), "suites,", total, "tests")
