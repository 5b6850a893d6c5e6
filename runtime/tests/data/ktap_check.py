"""Parses KTAP with the kernel's own parser (tools/testing/kunit/kunit_parser.py) and prints
what it understood as JSON: the run's status, parse errors, and each file's tests.

Usage: ktap_check.py KUNIT_DIR REPORT
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
import kunit_parser  # noqa: E402

with open(sys.argv[2]) as f:
    main = kunit_parser.parse_run_tests(f.readlines())


def errors(t):
    return t.counts.errors + sum(errors(s) for s in t.subtests)


print(json.dumps({
    "status": main.status.name,
    "errors": errors(main),
    "counts": {
        "passed": main.counts.passed,
        "failed": main.counts.failed,
        "skipped": main.counts.skipped,
        "crashed": main.counts.crashed,
    },
    "files": {
        s.name: {
            "status": s.status.name,
            "tests": {c.name: c.status.name for c in s.subtests},
        }
        for s in main.subtests
    },
}))
