"""What the agent (often root) writes into a sandbox that may already belong to the task's user
(the fetcher wrote in it as that user): output files and links, never through a link, FIFO or
hard link a process of that user put there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tepui.agent.containerizers.processes import open_output
from tepui.agent.shell import _link_in_sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    box = tmp_path / "sandbox"
    box.mkdir()
    return box


@pytest.fixture
def precious(tmp_path: Path) -> Path:
    target = tmp_path / "precious"
    target.write_bytes(b"keep me\n")
    return target


def test_output_goes_to_a_plain_file_created_or_appended(sandbox: Path) -> None:
    with open_output(str(sandbox / "stdout")) as out:
        out.write(b"one\n")
    with open_output(str(sandbox / "stdout")) as out:
        out.write(b"two\n")
    assert (sandbox / "stdout").read_bytes() == b"one\ntwo\n"


def test_output_is_never_written_through_a_link_a_fifo_or_a_hard_link(sandbox: Path, precious: Path) -> None:
    (sandbox / "stdout").symlink_to(precious)
    with pytest.raises(OSError, match=r"stdout in the sandbox is a link or a FIFO"):
        open_output(str(sandbox / "stdout"))
    os.mkfifo(sandbox / "stderr")  # nobody reads it: opening it must not block either
    with pytest.raises(OSError, match=r"stderr in the sandbox is a link or a FIFO"):
        open_output(str(sandbox / "stderr"))
    os.link(precious, sandbox / "out")
    with pytest.raises(OSError, match=r"out in the sandbox is not a plain file \(a FIFO, device or hard link\)"):
        open_output(str(sandbox / "out"))
    assert precious.read_bytes() == b"keep me\n"


def test_a_volume_link_is_made_with_its_directories_and_never_through_a_planted_link(
        sandbox: Path, tmp_path: Path) -> None:
    volume, outside = tmp_path / "volume", tmp_path / "outside"
    volume.mkdir()
    outside.mkdir()
    _link_in_sandbox(str(sandbox), "data/db/vol", str(volume), None)
    assert os.readlink(sandbox / "data" / "db" / "vol") == str(volume)
    _link_in_sandbox(str(sandbox), "data/db/vol", str(outside), None)  # already there: left alone
    assert os.readlink(sandbox / "data" / "db" / "vol") == str(volume)
    (sandbox / "planted").symlink_to(outside)
    with pytest.raises(OSError):
        _link_in_sandbox(str(sandbox), "planted/vol", str(volume), None)
    with pytest.raises(OSError, match=r"cannot name a place inside the sandbox"):
        _link_in_sandbox(str(sandbox), "../vol", str(volume), None)
    assert list(outside.iterdir()) == [] and not (tmp_path / "vol").exists()


def test_a_volume_link_is_made_before_anything_else_made_the_sandbox(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandboxes" / "F1" / "t1"
    _link_in_sandbox(str(sandbox), "vol", str(tmp_path), None)
    assert os.readlink(sandbox / "vol") == str(tmp_path)
