"""Atomic writes: whole files or none, readable by whoever the umask lets read them."""

import os
import stat

import pytest

from spanqa.files import write_json_atomic, write_text_atomic


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_keep_the_umasks_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "eval_results.json", {"f1": 1.0})
        write_text_atomic(tmp_path / "README.md", "card")
        write_text_atomic(tmp_path / "README.md", "card, rewritten")  # over an existing file
    finally:
        os.umask(old)
    for name in ("eval_results.json", "README.md"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode
    assert (tmp_path / "README.md").read_text() == "card, rewritten"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "eval_results.json"]  # no temp files left
