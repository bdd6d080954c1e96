"""SourceNamer: inputs named relative to their root (root's own name first) or by salted hash."""

import os
import stat

from fmct.io.sources import SourceNamer, store_salt


def test_relative_names_start_at_the_root(tmp_path):
    root = tmp_path / "in"
    namer = SourceNamer([root, root / "DOE" / "deep", tmp_path / "x.nii.gz"])
    assert namer(root / "DOE" / "s1" / "IM1") == "in/DOE/s1/IM1"
    assert namer(root / "DOE" / "deep" / "f") == "deep/f"  # the deepest root holding it
    assert namer(root) == "in"
    assert namer(tmp_path / "x.nii.gz") == "x.nii.gz"
    assert namer(tmp_path / "elsewhere" / "y") == "y"  # under no root: its own name only
    rel = SourceNamer(["in"])  # a relative root is named the same way
    assert rel(os.path.join("in", "a", "b")) == "in/a/b"


def test_hashed_names_depend_on_salt_and_path_only(tmp_path):
    a, b = SourceNamer([tmp_path], "salt-1"), SourceNamer([tmp_path], "salt-2")
    p = tmp_path / "DOE_JANE" / "s1"
    assert a(p) == a(p) and a(p) != b(p) and a(p) != a(tmp_path / "other")
    assert a(p).startswith("h-") and len(a(p)) == 18 and "DOE" not in a(p)


def test_scrub_replaces_given_paths(tmp_path):
    namer = SourceNamer([tmp_path / "in"], "s")
    p = tmp_path / "in" / "DOE"
    text = namer.scrub(f"cannot read {p}/f: broken", [p])
    assert str(tmp_path) not in text and text == f"cannot read {namer(p)}/f: broken"


def test_store_salt_is_private_and_stable(tmp_path):
    salt = store_salt(tmp_path)
    assert len(salt) == 32 and store_salt(tmp_path) == salt
    mode = stat.S_IMODE((tmp_path / ".salt").stat().st_mode)
    assert mode & 0o077 == 0
    assert [p.name for p in tmp_path.iterdir()] == [".salt"]  # no temporary file left
