"""The agent's checkpoint on disk: what a restarted agent needs to take its tasks back. The
records and the ``Checkpoint`` effect are ``checkpoint.py``'s (pure); this shell module writes
and reads them.

Layout under ``<work_dir>/meta`` (one file per thing that changes on its own, so a damaged
file costs one task, not the agent)::

    agent.json                      the agent: id, boot id, what it offered, its frameworks
    executors.json                  custom executors: framework, info, sandbox, tasks, secret
    tasks/<run>/task.json           a task: its TaskInfo, state, kill request, unacked updates
    tasks/<run>/pid                 written by the task's supervisor (``processes.py``) at start
    tasks/<run>/exit                written by the supervisor when the task ends: its status

``<run>`` is :func:`tepui.agent.containerizers.cgroups.task_dir_name` of (framework id, task id): readable,
bounded, and safe whatever the ids contain.

Writes are atomic (a complete temp file, then a rename) and happen before the agent acts on
what they record (the shell performs the ``Checkpoint`` effect first in every batch), so a status
update is recorded before it is forwarded and a task before it is launched. The old file is
unlinked just before the rename rather than renamed over: on ext4, replacing a file by rename
makes the kernel start writing the new data back at once (``auto_da_alloc``), 0.29 ms a write
here against 0.04 ms, and a task is checkpointed about five times (docs/performance.md).

Why no fsync: the checkpoint has to outlive the agent *process*, whose crash leaves the page
cache intact, and never a host crash — a host that crashed reboots, its tasks died with it, and
a checkpoint from an earlier boot is set aside unread (``boot_id``, written once per boot and
synced, says which boot wrote the rest). Syncing each write (file, its directory, the tasks
directory) cost 3.8 ms per write here, about 20 ms per task; a rename costs 0.2–0.6 ms.

Reading back: a file that does not decode is *torn* (a disk that lost a write, a hand edit).
Strict mode (the default, like Mesos ``--strict``) refuses to start and names the file; lenient
mode discards the damaged part and recovers the rest. A leftover ``*.tmp`` beside its file is
what a crash before the rename leaves: the file is intact, and nothing was acted on that only the
temp file recorded, so both modes delete it, with a log line. A ``*.tmp`` *without* its file is
a complete write whose rename a crash interrupted (the old file is unlinked only once the temp
file is written and closed): it is put in place, unless it does not decode (the first write of
a task, interrupted: nothing was acted on), which is deleted.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Callable, TypeVar

import msgspec

from tepui.agent.checkpointing.checkpoint import (
    FORMAT,
    AgentCheckpoint,
    Checkpoint,
    ExecutorCheckpoint,
    ExecutorsCheckpoint,
    Recovered,
    TaskCheckpoint,
)
from tepui.agent.containerizers.cgroups import make_dir, task_dir_name
from tepui.agent.custom_executors.executors import EXECUTOR_PREFIX

log = logging.getLogger("tepui.agent.checkpointing.checkpoint")

Record = TypeVar("Record", AgentCheckpoint, TaskCheckpoint, ExecutorsCheckpoint)


class CheckpointError(Exception):
    """A torn checkpoint in strict mode: the message names the file and the way out."""


_encoder = msgspec.json.Encoder()


class CheckpointStore:
    """Reads and writes ``<work_dir>/meta`` (shell side: files live here, not in the core)."""

    def __init__(self, work_dir: str) -> None:
        self.root = os.path.join(os.path.abspath(work_dir), "meta")
        self.tasks_dir = os.path.join(self.root, "tasks")
        self._boot_recorded: str | None = None

    def run_dir(self, framework_id: str, task_id: str) -> str:
        return os.path.join(self.tasks_dir, task_dir_name(framework_id, task_id))

    # --- writing ------------------------------------------------------------------------------

    def write(self, checkpoint: Checkpoint) -> None:
        """Raises OSError if the disk refuses: the caller must not act on unrecorded state."""
        if checkpoint.agent is not None:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            if checkpoint.agent.boot_id and checkpoint.agent.boot_id != self._boot_recorded:
                _atomic_write(os.path.join(self.root, "boot_id"), checkpoint.agent.boot_id.encode(), sync=True)
                self._boot_recorded = checkpoint.agent.boot_id
            _atomic_write(os.path.join(self.root, "agent.json"), _encoder.encode(checkpoint.agent))
        if checkpoint.executors is not None:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            _atomic_write(os.path.join(self.root, "executors.json"), _encoder.encode(checkpoint.executors))
        for (framework_id, task_id), task in checkpoint.tasks.items():
            directory = self.run_dir(framework_id, task_id)
            if task is None:
                _remove_run_dir(directory)
                continue
            path, data = os.path.join(directory, "task.json"), _encoder.encode(task)
            try:
                _atomic_write(path, data)
            except FileNotFoundError:  # the task's first checkpoint: its directory is made once
                make_dir(directory, 0o700)
                _atomic_write(path, data)

    def written_in_boot(self) -> str | None:
        """The boot id of the host when this checkpoint was written (None: no checkpoint, or
        one older than this file). Read before anything else: a checkpoint from an earlier
        boot is set aside unread, whatever state a crash left it in."""
        try:
            with open(os.path.join(self.root, "boot_id")) as f:
                return f.read().strip() or None
        except OSError:
            return None

    def previous_agent_id(self) -> str | None:
        """The agent id in ``agent.json``, if it can be read at all."""
        try:
            with open(os.path.join(self.root, "agent.json"), "rb") as f:
                return msgspec.json.decode(f.read(), type=AgentCheckpoint).agent_id
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return None

    def archive(self, why: str) -> str | None:
        """Moves the whole checkpoint aside (a reboot, or an operator's fresh start); returns
        where it went."""
        if not os.path.isdir(self.root):
            return None
        index = 1
        while os.path.exists(f"{self.root}.{why}.{index}"):
            index += 1
        target = f"{self.root}.{why}.{index}"
        os.rename(self.root, target)
        return target

    # --- reading ------------------------------------------------------------------------------

    def load(self, strict: bool = True) -> Recovered:
        discarded: list[str] = []

        def damaged(path: str, why: str) -> None:
            if strict:
                raise CheckpointError(
                    f"the agent's checkpoint is damaged: {path}: {why}. Strict recovery (the default) refuses to "
                    f"guess. Either restart with --no-strict (under `tepui up`: `tepui up --agent-arg=--no-strict`) "
                    f"to discard the damaged part and recover the rest, or move {self.root} away to start as a new "
                    f"agent (its tasks are then lost to it).")
            log.warning("event=checkpoint_part_discarded path=%s reason=%r", path, why)
            discarded.append(f"{path}: {why}")

        self._remove_temp_files()
        agent = None
        agent_path = os.path.join(self.root, "agent.json")
        if os.path.exists(agent_path):
            agent = _decode(agent_path, AgentCheckpoint, damaged)
        executors: list[ExecutorCheckpoint] = []
        executors_path = os.path.join(self.root, "executors.json")
        if agent is not None and os.path.exists(executors_path):
            decoded = _decode(executors_path, ExecutorsCheckpoint, damaged)
            executors = list(decoded.executors) if decoded is not None else []
        tasks: list[TaskCheckpoint] = []
        if agent is None:
            return Recovered(None, [], [], discarded)
        executor_runs = {task_dir_name(e.framework_id, EXECUTOR_PREFIX + e.info.executor_id) for e in executors}
        if os.path.isdir(self.tasks_dir):
            for name in sorted(os.listdir(self.tasks_dir)):
                path = os.path.join(self.tasks_dir, name, "task.json")
                if not os.path.exists(path):
                    # An executor's supervisor files, or those of a task whose record was
                    # already removed (nothing to recover).
                    if name not in executor_runs:
                        shutil.rmtree(os.path.join(self.tasks_dir, name), ignore_errors=True)
                    continue
                task = _decode(path, TaskCheckpoint, damaged)
                if task is None:
                    continue
                if task_dir_name(task.framework_id, task.info.task_id) != name:
                    damaged(path, "the record does not belong to this directory")
                    continue
                tasks.append(task)
        return Recovered(agent, tasks, executors, discarded)

    def _remove_temp_files(self) -> None:
        if not os.path.isdir(self.root):
            return
        for directory, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.endswith(".tmp"):
                    continue
                path = os.path.join(directory, name)
                target = path[: -len(".tmp")]
                if not os.path.exists(target) and _complete_json(path):
                    log.info("event=checkpoint_temp_promoted path=%s reason=\"a complete write whose rename "
                             "was interrupted\"", path)
                    os.rename(path, target)
                    continue
                log.info("event=checkpoint_temp_removed path=%s reason=\"an interrupted write; the file it "
                         "would have replaced is intact, or there was none\"", path)
                os.unlink(path)

    # --- what task supervisors leave ------------------------------------------------------

    def supervisor_pid(self, framework_id: str, task_id: str) -> int | None:
        return _read_int(os.path.join(self.run_dir(framework_id, task_id), "pid"))

    def supervisor_exit(self, framework_id: str, task_id: str) -> int | None:
        return _read_int(os.path.join(self.run_dir(framework_id, task_id), "exit"))


def _complete_json(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            msgspec.json.decode(f.read())
    except (OSError, msgspec.DecodeError):
        return False
    return True


def _decode(path: str, kind: type[Record], damaged: Callable[[str, str], None]) -> Record | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
        if not data:
            damaged(path, "the file is empty")
            return None
        value = msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        damaged(path, f"it does not decode ({exc}); the file is truncated or was altered")
        return None
    written = getattr(value, "format", FORMAT)
    if written != FORMAT:
        damaged(path, f"checkpoint format {written} is not the {FORMAT} this agent reads")
        return None
    return value


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _remove_run_dir(directory: str) -> None:
    """A finished task's run directory holds a few plain files (task.json, pid, exit): removed
    directly, which is several times cheaper than ``shutil.rmtree`` for so few; anything else
    (a subdirectory, a race) falls back to it."""
    try:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(directory, ignore_errors=True)


def _atomic_write(path: str, data: bytes, sync: bool = False) -> None:
    temp = path + ".tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    if sync:
        os.replace(temp, path)
        _fsync_dir(os.path.dirname(path))
        return
    try:
        os.unlink(path)  # not renamed over: see the module's docstring (auto_da_alloc)
    except FileNotFoundError:
        pass
    os.rename(temp, path)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
