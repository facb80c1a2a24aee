"""How the share finds its cgroup hierarchy and writes a sandbox's groups, against a
fake cgroupfs (a directory tree standing in for /sys/fs/cgroup): cgroup v2, which
this project's CI host does not delegate, is tested only this way; v1 also for real
in `test_attacks_share.py`. And how host uids are given to sandboxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessionflow.sandbox import cgroups
from sessionflow.sandbox.cgroups import Share, Unavailable
from sessionflow.sandbox.uids import HostUids

MiB = 1024 * 1024
V2_MOUNTINFO = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def fake_v2(fs: Path, group: str, *, controllers: str, procs: str = "4242\n4243\n") -> Path:
    base = fs / "sys/fs/cgroup" / group.lstrip("/")
    base.mkdir(parents=True)
    (base / "cgroup.controllers").write_text(controllers)
    (base / "cgroup.subtree_control").write_text("")
    (base / "cgroup.procs").write_text(procs)
    return base


def drop_files(*groups: Path) -> None:
    """cgroupfs removes a group's control files with it; a plain directory does not."""
    for group in groups:
        for entry in group.rglob("*"):
            if entry.is_file():
                entry.unlink()


def test_v2_moves_the_worker_to_a_leaf_and_delegates_the_controllers(tmp_path: Path) -> None:
    base = fake_v2(tmp_path, "/system.slice/sessionflow.service", controllers="cpu io memory pids")
    found = cgroups.detect(
        fs_root=tmp_path,
        mountinfo=V2_MOUNTINFO,
        self_cgroup="0::/system.slice/sessionflow.service\n",
    )
    assert found.version == 2
    parent = base / "sessionflow"
    assert set(found.parents.values()) == {parent}
    # The worker's processes went to its own leaf before the controllers were enabled.
    assert (base / "worker" / "cgroup.procs").exists()
    assert (base / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"

    command = found.prepare("sbx-1", Share(memory_bytes=64 * MiB, processes=32, cpu_percent=150))
    group = parent / "sbx-1"
    assert command.sandbox == (group,)
    assert (group / "memory.max").read_text() == str(64 * MiB)
    assert (group / "pids.max").read_text() == "32"
    assert (group / "cpu.max").read_text() == "150000 100000"
    (leaf,) = command.leaves
    assert leaf.parent == group and leaf.name.startswith("cmd-")
    argv = command.join_argv()
    assert argv[:2] == ["/bin/sh", "-c"] and argv[-1] == "--"
    assert argv[4:-1] == [str(leaf / "cgroup.procs")]
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n")
    assert command.oom_kills() == 2
    drop_files(group)
    command.remove()
    assert not group.exists()


def test_v2_without_delegated_controllers_is_unavailable(tmp_path: Path) -> None:
    fake_v2(tmp_path, "/user.slice", controllers="cpu io")
    with pytest.raises(Unavailable, match="no memory, pids controller delegated"):
        cgroups.detect(fs_root=tmp_path, mountinfo=V2_MOUNTINFO, self_cgroup="0::/user.slice\n")


def test_v2_at_the_root_enables_controllers_without_moving_anything(tmp_path: Path) -> None:
    base = fake_v2(tmp_path, "/", controllers="memory pids cpu")
    found = cgroups.detect(fs_root=tmp_path, mountinfo=V2_MOUNTINFO, self_cgroup="0::/\n")
    assert found.parents["memory"] == base / "sessionflow"
    assert not (base / "worker").exists()
    assert (base / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"


def test_v1_when_v2_has_no_controllers(tmp_path: Path) -> None:
    mountinfo = V2_MOUNTINFO.replace("/sys/fs/cgroup ", "/sys/fs/cgroup/unified ")
    for controller in ("memory", "pids", "cpu,cpuacct"):
        mountinfo += (
            f"40 25 0:30 / /sys/fs/cgroup/{controller} rw - cgroup cgroup rw,{controller}\n"
        )
        (tmp_path / "sys/fs/cgroup" / controller).mkdir(parents=True)
    fake_v2(tmp_path, "/unified", controllers="")
    found = cgroups.detect(
        fs_root=tmp_path,
        mountinfo=mountinfo,
        self_cgroup="4:memory:/\n8:pids:/\n1:cpu,cpuacct:/\n0::/\n",
    )
    assert found.version == 1
    assert found.parents["cpu"] == tmp_path / "sys/fs/cgroup/cpu,cpuacct/sessionflow"
    command = found.prepare("sbx-2", Share(memory_bytes=64 * MiB, processes=16, cpu_percent=100))
    memory = found.parents["memory"] / "sbx-2"
    assert (memory / "memory.limit_in_bytes").read_text() == str(64 * MiB)
    assert (found.parents["pids"] / "sbx-2" / "pids.max").read_text() == "16"
    assert (found.parents["cpu"] / "sbx-2" / "cpu.cfs_quota_us").read_text() == "100000"
    assert len(command.join_argv()) == 4 + 3 + 1  # one cgroup.procs per hierarchy
    drop_files(*command.sandbox)
    command.remove()
    assert not memory.exists()


def test_nothing_mounted_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable):
        cgroups.detect(fs_root=tmp_path, mountinfo="", self_cgroup="")


def test_host_uids_are_one_per_sandbox_and_recorded(tmp_path: Path) -> None:
    uids = HostUids(5000, 4)
    given = [uids.of(tmp_path, f"sbx-{i}") for i in range(4)]
    assert sorted(given) == [5000, 5001, 5002, 5003]  # collisions go to the next free uid
    assert [uids.of(tmp_path, f"sbx-{i}") for i in range(4)] == given  # recorded
    with pytest.raises(OSError, match="all 4 sandbox uids"):
        uids.of(tmp_path, "sbx-one-too-many")
    uids.release(tmp_path, "sbx-2")
    assert uids.of(tmp_path, "sbx-late") == given[2]
    assert HostUids(7000, 1).of(tmp_path, "anything") == 7000
    with pytest.raises(ValueError):
        HostUids(2**32 - 10, 100)
