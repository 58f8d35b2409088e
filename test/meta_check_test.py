#!/usr/bin/env python3
"""test/meta_check.py refuses a META.json that breaks the PGXN meta spec or
disagrees with the tree, one fault at a time, and passes the real one.

  python3 test/meta_check_test.py
"""
import copy
import json
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import meta_check  # noqa: E402

with open(os.path.join(ROOT, "META.json"), encoding="utf-8") as f:
    REAL = json.load(f)


def with_tree(meta, control_version=None):
    """meta_check.check on a copy of the files META.json names, with meta."""
    tmp = tempfile.mkdtemp()
    try:
        for ext, info in REAL["provides"].items():
            for name in (f"{ext}.control", info["file"], info.get("docfile")):
                if name:
                    os.makedirs(os.path.join(tmp, os.path.dirname(name)), exist_ok=True)
                    shutil.copy(os.path.join(ROOT, name), os.path.join(tmp, name))
        if control_version:
            path = os.path.join(tmp, "presence.control")
            with open(path, encoding="utf-8") as f:
                text = f.read()
            with open(path, "w", encoding="utf-8") as f:
                f.write(text.replace("default_version = '", f"default_version = '{control_version}'  # '", 1))
        with open(os.path.join(tmp, "META.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f)
        return meta_check.check(tmp)[0]
    finally:
        shutil.rmtree(tmp)


def mutated(change):
    meta = copy.deepcopy(REAL)
    change(meta)
    return meta


class MetaCheck(unittest.TestCase):
    def test_real_meta_passes(self):
        self.assertEqual(with_tree(REAL), [])

    def assertRefused(self, change, field, control_version=None):
        errors = with_tree(mutated(change), control_version)
        self.assertTrue(any(e.startswith(field) for e in errors), errors)

    def test_missing_required(self):
        for key in ("name", "abstract", "maintainer", "license", "provides", "version", "meta-spec"):
            self.assertRefused(lambda m, k=key: m.pop(k), key)

    def test_unknown_field(self):
        self.assertRefused(lambda m: m.update(homepage="https://x.example/"), "homepage")

    def test_custom_field_allowed(self):
        self.assertEqual(with_tree(mutated(lambda m: m.update(x_build="yes"))), [])

    def test_bad_values(self):
        cases = [
            (lambda m: m.update(name="a"), "name"),
            (lambda m: m.update(name="pres ence"), "name"),
            (lambda m: m.update(version="1.1"), "version"),
            (lambda m: m.update(license="PostgreSQL"), "license"),
            (lambda m: m.update(maintainer=[]), "maintainer"),
            (lambda m: m.update(tags=["a/b"]), "tags"),
            (lambda m: m.update(release_status="final"), "release_status"),
            (lambda m: m["meta-spec"].update(version="2.0.0"), "meta-spec.version"),
            (lambda m: m["provides"]["presence"].pop("file"), "provides.presence.file"),
            (lambda m: m["provides"]["presence"].update(version="1.1"), "provides.presence.version"),
            (lambda m: m["prereqs"]["runtime"]["requires"].update(PostgreSQL="15"),
             "prereqs.runtime.requires.PostgreSQL"),
            (lambda m: m["prereqs"].update(install={}), "prereqs.install"),
            (lambda m: m["prereqs"]["runtime"].update(needs={}), "prereqs.runtime.needs"),
            (lambda m: m.update(resources={"homepage": "not a url"}), "resources.homepage"),
        ]
        for change, field in cases:
            with self.subTest(field=field):
                self.assertRefused(change, field)

    def test_version_ranges(self):
        ok = mutated(lambda m: m["prereqs"]["runtime"]["requires"].update(
            PostgreSQL=">= 15.0.0, < 20.0.0", plpgsql=0))
        self.assertEqual(with_tree(ok), [])

    def test_disagrees_with_tree(self):
        self.assertRefused(lambda m: m.update(version="1.0.0"), "version")
        self.assertRefused(lambda m: None, "version", control_version="1.2")
        self.assertRefused(lambda m: m["provides"]["presence_proxy"].update(docfile="nope.md"),
                           "provides.presence_proxy.docfile")
        self.assertRefused(lambda m: m["provides"].update(other={"file": "presence--1.0.sql", "version": "1.1.0"}),
                           "provides.other")

    def test_dist_name(self):
        self.assertEqual(meta_check.as_semver("1.1"), "1.1.0")
        self.assertEqual(meta_check.as_semver("2"), "2.0.0")
        self.assertEqual(meta_check.as_semver("1.2.3"), "1.2.3")


if __name__ == "__main__":
    unittest.main(verbosity=1)
