"""Artifacts between stages: the URIs that bring upstream outputs into a downstream task's sandbox.

A stage's ``outputs`` are files in its tasks' sandboxes. A downstream task finds them at
``<upstream stage>/<upstream index>/<path>`` in its own sandbox (``map/3/count.txt``), with no
shared filesystem: for each (upstream index, output) it gets one fetcher URI naming **the
master's** files proxy and the producing attempt, ``<base>/tasks/<task_id>/files/download?
framework_id=F&agent_id=A&path=P``, saved under that nested ``output_file``. Why the master and
not the producing agent's own files API: the master is the one address everybody knows (an
agent's HTTP port is its own, and may change when it restarts), it calls the agent with that
agent's read relay token (the fetching agent needs no credential of the other agent), and under
the master's open reads (``tepui up``) the fetch needs no credential at all. ``agent_id`` lets
the master reach the sandbox after it forgot the task (it keeps the last 1,000 completed tasks
per framework, and none across a failover): a 10,000-task map's first outputs are read long
after the master's memory of them is gone.

Why these choices (docs/batch.md, "Artifacts between stages"):

* Files only. ``/files/download`` sends one regular file's bytes; an output that is a directory
  fails the downstream fetch with a message saying to archive it (``tar czf out.tgz dir``).
  Argo tars directories for you; here the task does, so the framework never unpacks an archive
  it did not ask for, and the bytes are the task's own.
* ``extract=False``: an output named ``part.tgz`` arrives as that file, where the task said, not
  unpacked over the sandbox's root (the fetcher extracts into the sandbox itself).
* ``cache=True``: the URI names one ended attempt (task ids are unique per try), whose sandbox
  no longer changes, so a reduce array of M tasks over N maps fetches each map output once per
  agent instead of M times. The fetcher caches per user, LRU-bounded (2 GiB by default).
* Bounded: at most :data:`MAX_INPUTS` URIs per task, checked at submission
  (:func:`check_inputs`, a SpecError naming the stage's ``depends_on``), because the URIs ride in
  the launch message and are fetched one after the other (each through two HTTP hops). A reduce
  over a 10,000-task map is refused and told to combine outputs in fewer tasks (a combine stage
  with ``n_to_n`` or a smaller array) rather than launched with a 2 MB task.

Pure: takes the spec, a lookup of the succeeded attempts and the master's URL; no clock, no I/O.
"""

from __future__ import annotations

import posixpath
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tepui.sdk.protocol.values import CommandURI, MasterInfo
from tepui.sdk.relay_tokens import task_files_token
from tepui.sdk.spec_documents import SpecError

if TYPE_CHECKING:  # spec imports this module to check a submission
    from tepui.frameworks.batch.spec import JobSpec

__all__ = [
    "MAX_INPUTS", "Producer", "check_inputs", "download_uri", "input_count", "input_path", "input_uris", "master_http_url",
    "task_files_credential",
]

#: URIs one task may receive from its upstreams (index x output pairs). 1,000 keeps the launch
#: message near 250 KB and the fetch (sequential, two HTTP hops each, a few ms apiece) in seconds.
MAX_INPUTS = 1000


@dataclass(frozen=True)
class Producer:
    """The succeeded attempt of one upstream (stage, index): where its outputs are."""

    task_id: str
    agent_id: str
    framework_id: str


def master_http_url(master: MasterInfo, scheme: str = "http") -> str | None:
    """The ``base`` of the URIs from what ``SUBSCRIBED`` says of the master: the host of its
    advertised address and its HTTP port (None when it serves no HTTP). Taken anew at each
    subscription, so after a failover new tasks name the new master. ``scheme="https"`` for a
    master serving TLS, which MasterInfo does not say (the shell's ``--master-http`` may)."""
    if master.http_port is None:
        return None
    host = master.address.rsplit(":", 1)[0] if ":" in master.address else master.address
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{master.http_port}"


def input_path(stage: str, index: int, output: str) -> str:
    """Where an upstream output lands in the downstream sandbox: ``map/3/count.txt``."""
    return f"{stage}/{index}/{posixpath.normpath(output)}"


def download_uri(base: str, producer: Producer, output: str, credential: str | None = None) -> str:
    """The master's files-proxy URL of one output of ``producer``. ``credential``: a bearer token
    the master accepts for reads (none needed when its reads are open, ``tepui up``'s setting);
    it travels as the URL's password, which the fetcher sends as HTTP Basic auth, never on a
    redirect, and hides in its logs."""
    parts = urllib.parse.urlsplit(base.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base must be the master's http(s) URL (e.g. http://127.0.0.1:5080), got {base!r}")
    netloc = parts.netloc
    if credential is not None:
        netloc = f"artifact:{urllib.parse.quote(credential, safe='')}@{netloc}"
    path = f"{parts.path}/tasks/{urllib.parse.quote(producer.task_id, safe='')}/files/download"
    query = urllib.parse.urlencode({"framework_id": producer.framework_id, "agent_id": producer.agent_id,
                                    "path": posixpath.normpath(output)})
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, query, ""))


def task_files_credential(cluster_token: str) -> Callable[[Producer], str]:
    """``input_uris``' ``credential`` for a framework holding the cluster token: each producer's
    task files token (``tepui.sdk.relay_tokens``), which opens that one task's files at the
    master for reads and nothing else. Never the cluster token itself: the URIs sit in every
    downstream TaskInfo (the master's memory and ``/state``, the agents' checkpoints)."""
    return lambda producer: task_files_token(cluster_token, producer.framework_id, producer.task_id)


def input_uris(spec: JobSpec, stage: str, index: int, producer: Callable[[str, int], Producer | None], base: str,
               credential: Callable[[Producer], str | None] | None = None) -> tuple[CommandURI, ...]:
    """The URIs of task ``index`` of ``stage``: one per output of each upstream index it waits
    for (``spec.upstream_indices``), in ``depends_on`` order, then index, then output order.

    ``producer(upstream_stage, i)`` is the succeeded attempt of that index, or None when it did
    not succeed: skipped under ``any_finished`` (a report over a partly failed stage), and a
    ValueError otherwise, since ``all_succeeded`` and ``n_to_n`` tasks run only after their
    upstream indices succeeded. ``base``: the master's HTTP URL. ``credential(producer)``: the
    token for that producer's files when the master's reads need one (None: no credential)."""
    conditions = {d.stage: d.condition for d in spec.stage(stage).depends_on}
    uris: list[CommandURI] = []
    for upstream, indices in spec.upstream_indices(stage, index).items():
        outputs = spec.stage(upstream).outputs
        if not outputs:
            continue
        for i in indices:
            made = producer(upstream, i)
            if made is None:
                if conditions[upstream] == "any_finished":
                    continue
                raise ValueError(f"{stage}[{index}] waits for {upstream}[{i}] ({conditions[upstream]}), "
                                 "which has no succeeded attempt")
            token = credential(made) if credential is not None else None
            uris.extend(CommandURI(value=download_uri(base, made, output, token), extract=False, cache=True,
                                   output_file=input_path(upstream, i, output))
                        for output in outputs)
    return tuple(uris)


def input_count(spec: JobSpec, stage: str) -> int:
    """The most URIs one task of ``stage`` can receive (every upstream index succeeded)."""
    return sum(len(spec.upstream_indices(stage, 0)[d.stage]) * len(spec.stage(d.stage).outputs)
               for d in spec.stage(stage).depends_on)


def check_inputs(spec: JobSpec) -> None:
    """SpecError when a stage's tasks would receive more than :data:`MAX_INPUTS` upstream outputs
    (called at submission, after the DAG is known to be sound)."""
    for i, stage in enumerate(spec.stages):
        count = input_count(spec, stage.name)
        if count > MAX_INPUTS:
            parts = ", ".join(f"{d.stage}: {len(spec.upstream_indices(stage.name, 0)[d.stage])} tasks x "
                              f"{len(spec.stage(d.stage).outputs)} outputs" for d in stage.depends_on
                              if spec.stage(d.stage).outputs)
            raise SpecError(f"stages[{i}].depends_on",
                            f"each task of {stage.name!r} would fetch {count} upstream outputs ({parts}), more than "
                            f"the {MAX_INPUTS} a task may receive: combine them first (an n_to_n stage that merges "
                            "each map's outputs into one file, or fewer, bigger upstream tasks)")
