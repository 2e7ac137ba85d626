"""pytest imports test modules by their file name (rootdir-relative "prepend"
mode): two test files of one name in different folders stop the whole run at
collection. Keep every test module's name unique."""
import collections
import os

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_test_module_names_are_unique():
    seen = collections.defaultdict(list)
    for dirpath, _, files in os.walk(TESTS):
        for name in files:
            if name.endswith(".py") and name != "__init__.py":
                seen[name].append(os.path.relpath(dirpath, TESTS))
    clashes = {name: dirs for name, dirs in seen.items() if len(dirs) > 1 and name != "conftest.py"}
    assert clashes == {}
