#!/usr/bin/env python3
"""Checks META.json against the PGXN Meta Spec 1.0.0 (https://pgxn.org/spec/)
and against the tree: its version is default_version of presence.control as
SemVer (1.1 is 1.1.0), each extension it provides has that version in its
control file, and the files it names exist.  Debian has no PGXN validator
(PGXN::Meta::Validator is not packaged), hence this one, stdlib only.

  python3 test/meta_check.py [TREE]            # the checks; exit 1 on an error
  python3 test/meta_check.py --dist-name [TREE] # prints presence-X.Y.Z
  python3 test/meta_check.py --zip ZIP          # a `make dist` zip: one top
                                               # directory NAME-VERSION/ with a
                                               # META.json that passes
"""
import json
import os
import re
import sys
import tempfile
import zipfile

SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
                    r"(-?[A-Za-z][0-9A-Za-z-]*)?$")
LICENSES = {
    "agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd",
    "freebsd", "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1",
    "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5",
    "postgresql", "qpl_1_0", "ssleay", "sun", "zlib", "open_source",
    "restricted", "unrestricted", "unknown",
}
PHASES = {"configure", "build", "runtime", "test", "develop"}
RELATIONS = {"requires", "recommends", "suggests", "conflicts"}
RELEASE_STATUS = {"stable", "testing", "unstable"}
TOP_REQUIRED = {"name", "abstract", "maintainer", "license", "provides",
                "version", "meta-spec"}
TOP_OPTIONAL = {"description", "generated_by", "tags", "no_index", "prereqs",
                "release_status", "resources"}
RANGE_OP = re.compile(r"^(==|!=|>=|<=|>|<)?\s*(.+)$")
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


def is_custom(key):
    return key[:2] in ("x_", "X_")


def is_term(value):
    # A Term: at least two characters, no slash, backslash, control
    # character or white space.
    return (isinstance(value, str) and len(value) >= 2
            and not re.search(r"[/\\\s\x00-\x1f\x7f]", value))


def is_tag(value):
    # A Tag: 1 to 255 characters, no slash, backslash or control character.
    return (isinstance(value, str) and 1 <= len(value) <= 255
            and not re.search(r"[/\\\x00-\x1f\x7f]", value))


def is_version_range(value):
    if value == 0 or value == "0":
        return True
    if not isinstance(value, str):
        return False
    for part in value.split(","):
        m = RANGE_OP.match(part.strip())
        if not m or not SEMVER.match(m.group(2).strip()):
            return False
    return True


def strings(value):
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    return None


def check_spec(meta):
    """Errors of META.json against the spec, as strings."""
    errors = []

    def err(path, msg):
        errors.append(f"{path}: {msg}")

    if not isinstance(meta, dict):
        return ["META.json: not a JSON object"]
    for key in sorted(TOP_REQUIRED - meta.keys()):
        err(key, "required, missing")
    for key in sorted(meta.keys() - TOP_REQUIRED - TOP_OPTIONAL):
        if not is_custom(key):
            err(key, "not a field of the spec (custom ones start with x_)")

    if "name" in meta and not is_term(meta["name"]):
        err("name", f"not a term: {meta['name']!r}")
    for key in ("abstract", "description", "generated_by"):
        if key in meta and not (isinstance(meta[key], str) and meta[key].strip()):
            err(key, "not a non-empty string")
    if "version" in meta and not (isinstance(meta["version"], str) and SEMVER.match(meta["version"])):
        err("version", f"not a semantic version: {meta['version']!r}")
    if "maintainer" in meta and strings(meta["maintainer"]) is None:
        err("maintainer", "not a string or a non-empty list of strings")

    lic = meta.get("license")
    if lic is not None:
        if isinstance(lic, dict):
            if not lic or not all(isinstance(u, str) and URI.match(u) for u in lic.values()):
                err("license", "an object must map names to URLs")
        elif strings(lic) is None or not set(strings(lic)) <= LICENSES:
            err("license", f"not one of the spec's license strings: {lic!r}")

    provides = meta.get("provides")
    if provides is not None:
        if not isinstance(provides, dict) or not provides:
            err("provides", "not a non-empty object")
        else:
            for ext, info in provides.items():
                path = f"provides.{ext}"
                if not is_term(ext):
                    err(path, "extension name is not a term")
                if not isinstance(info, dict):
                    err(path, "not an object")
                    continue
                for key in ("file", "version"):
                    if key not in info:
                        err(f"{path}.{key}", "required, missing")
                for key in info.keys() - {"file", "version", "abstract", "docfile"}:
                    if not is_custom(key):
                        err(f"{path}.{key}", "not a field of the spec")
                if "version" in info and not (isinstance(info["version"], str) and SEMVER.match(info["version"])):
                    err(f"{path}.version", f"not a semantic version: {info['version']!r}")
                for key in ("file", "docfile", "abstract"):
                    if key in info and not (isinstance(info[key], str) and info[key]):
                        err(f"{path}.{key}", "not a non-empty string")

    spec = meta.get("meta-spec")
    if spec is not None:
        if not isinstance(spec, dict) or spec.get("version") != "1.0.0":
            err("meta-spec.version", "must be \"1.0.0\"")
        elif "url" in spec and not (isinstance(spec["url"], str) and URI.match(spec["url"])):
            err("meta-spec.url", "not a URL")

    if "tags" in meta:
        tags = meta["tags"]
        if not isinstance(tags, list) or not tags or not all(is_tag(t) for t in tags):
            err("tags", "not a non-empty list of tags (1-255 characters, no / \\ or control characters)")

    if "no_index" in meta:
        ni = meta["no_index"]
        if not isinstance(ni, dict) or not ni:
            err("no_index", "not a non-empty object")
        else:
            for key, value in ni.items():
                if key not in ("file", "directory") and not is_custom(key):
                    err(f"no_index.{key}", "not a field of the spec")
                elif strings(value) is None:
                    err(f"no_index.{key}", "not a string or a list of strings")

    if "prereqs" in meta:
        pre = meta["prereqs"]
        if not isinstance(pre, dict):
            err("prereqs", "not an object")
        else:
            for phase, rels in pre.items():
                if phase not in PHASES and not is_custom(phase):
                    err(f"prereqs.{phase}", "not a phase of the spec")
                    continue
                if not isinstance(rels, dict):
                    err(f"prereqs.{phase}", "not an object")
                    continue
                for rel, exts in rels.items():
                    path = f"prereqs.{phase}.{rel}"
                    if rel not in RELATIONS and not is_custom(rel):
                        err(path, "not a relation of the spec")
                    elif not isinstance(exts, dict):
                        err(path, "not an object")
                    else:
                        for ext, rng in exts.items():
                            if not is_term(ext):
                                err(f"{path}.{ext}", "not a term")
                            if not is_version_range(rng):
                                err(f"{path}.{ext}", f"not a version range: {rng!r}")

    if "release_status" in meta and meta["release_status"] not in RELEASE_STATUS:
        err("release_status", f"not one of {sorted(RELEASE_STATUS)}")

    if "resources" in meta:
        res = meta["resources"]
        if not isinstance(res, dict):
            err("resources", "not an object")
        else:
            for key, value in res.items():
                if key == "homepage":
                    if not (isinstance(value, str) and URI.match(value)):
                        err("resources.homepage", "not a URL")
                elif key in ("bugtracker", "repository"):
                    allowed = {"bugtracker": {"web", "mailto"},
                               "repository": {"url", "web", "type"}}[key]
                    if not isinstance(value, dict) or not value:
                        err(f"resources.{key}", "not a non-empty object")
                        continue
                    for k, v in value.items():
                        if k not in allowed and not is_custom(k):
                            err(f"resources.{key}.{k}", "not a field of the spec")
                        elif not isinstance(v, str):
                            err(f"resources.{key}.{k}", "not a string")
                elif not is_custom(key):
                    err(f"resources.{key}", "not a field of the spec")
    return errors


def control_version(path):
    with open(path, encoding="utf-8") as f:
        m = re.search(r"^default_version\s*=\s*'([^']*)'", f.read(), re.M)
    return m.group(1) if m else None


def as_semver(version):
    """1.1 -> 1.1.0: PGXN's SemVer for an extension's version."""
    parts = version.split(".")
    return ".".join(parts + ["0"] * (3 - len(parts))) if len(parts) < 3 else version


def check_tree(meta, tree):
    """Errors of META.json against the tree it describes."""
    errors = []
    main = os.path.join(tree, "presence.control")
    version = control_version(main)
    if version is None:
        return ["presence.control: no default_version"]
    if meta.get("version") != as_semver(version):
        errors.append(f"version: {meta.get('version')!r}, but presence.control says {version!r} "
                      f"(PGXN: {as_semver(version)!r})")
    for ext, info in (meta.get("provides") or {}).items():
        if not isinstance(info, dict):
            continue
        control = os.path.join(tree, f"{ext}.control")
        if not os.path.exists(control):
            errors.append(f"provides.{ext}: no {ext}.control in the tree")
        else:
            v = control_version(control)
            if v is None or info.get("version") != as_semver(v):
                errors.append(f"provides.{ext}.version: {info.get('version')!r}, "
                              f"but {ext}.control says {v!r}")
        for key in ("file", "docfile"):
            if isinstance(info.get(key), str) and not os.path.isfile(os.path.join(tree, info[key])):
                errors.append(f"provides.{ext}.{key}: {info[key]} is not in the tree")
    return errors


def load(tree):
    with open(os.path.join(tree, "META.json"), encoding="utf-8") as f:
        return json.load(f)


def check(tree):
    try:
        meta = load(tree)
    except (OSError, ValueError) as e:
        return [f"META.json: {e}"], None
    errors = check_spec(meta)
    errors += check_tree(meta, tree)
    return errors, meta


def check_zip(path):
    errors = []
    try:
        z = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        return [str(e)]
    with z:
        names = z.namelist()
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) != 1:
            return [f"{path}: more than one top directory: {sorted(tops)}"]
        top = tops.pop()
        if any("/.git/" in n or n.endswith("/.git") for n in names):
            errors.append(f"{path}: has .git")
        with tempfile.TemporaryDirectory() as tmp:
            z.extractall(tmp)
            errs, meta = check(os.path.join(tmp, top))
            errors += errs
            if meta and top != f"{meta.get('name')}-{meta.get('version')}":
                errors.append(f"{path}: top directory {top}, not {meta.get('name')}-{meta.get('version')}")
    return errors


def main(argv):
    if argv[:1] == ["--zip"] and len(argv) == 2:
        errors = check_zip(argv[1])
        what = argv[1]
    elif argv[:1] == ["--dist-name"]:
        tree = argv[1] if len(argv) > 1 else "."
        print(f"presence-{as_semver(control_version(os.path.join(tree, 'presence.control')))}")
        return 0
    elif len(argv) <= 1 and not (argv and argv[0].startswith("-")):
        what = os.path.join(argv[0] if argv else ".", "META.json")
        errors, _ = check(argv[0] if argv else ".")
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for e in errors:
        print(f"{what}: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"{what}: valid (PGXN Meta Spec 1.0.0, and matches the tree)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
