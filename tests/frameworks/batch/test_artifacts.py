"""The URIs that bring upstream outputs into a downstream task's sandbox (frameworks/batch/artifacts.py):
exact values, the conditions, skipped indices and the submission bound."""

from __future__ import annotations

import pytest

from tepui.frameworks.batch.artifacts import (
    MAX_INPUTS, Producer, check_inputs, download_uri, input_count, input_path, input_uris, master_http_url,
    task_files_credential,
)
from tepui.frameworks.batch.spec import load_job
from tepui.sdk import CommandURI
from tepui.sdk.protocol.values import MasterInfo
from tepui.sdk.spec_documents import SpecError

BASE = "http://127.0.0.1:5080"


def job(*stages: dict[str, object]) -> dict[str, object]:
    return {"name": "wc", "stages": list(stages)}


WORDCOUNT = load_job(job(
    {"name": "map", "command": "true", "array": 3, "outputs": ["count.txt", "./logs/err.txt"]},
    {"name": "reduce", "command": "true", "depends_on": ["map"], "outputs": ["total.txt"]},
    {"name": "report", "command": "true", "depends_on": [{"stage": "reduce", "condition": "any_finished"},
                                                         {"stage": "map", "condition": "any_finished"}]},
    {"name": "per", "command": "true", "array": 3, "depends_on": [{"stage": "map", "condition": "n_to_n"}]},
))


def made(stage: str, index: int) -> Producer:
    return Producer(task_id=f"wc-1.{stage}.{index}.1", agent_id=f"agent-{index}", framework_id="fw-9")


def uri(stage: str, index: int, output: str, path: str) -> CommandURI:
    return CommandURI(value=f"{BASE}/tasks/wc-1.{stage}.{index}.1/files/download?framework_id=fw-9&agent_id=agent-{index}"
                            f"&path={output}", extract=False, cache=True, output_file=path)


def test_all_succeeded_gets_every_index_and_output_in_order() -> None:
    assert input_uris(WORDCOUNT, "reduce", 0, made, BASE) == (
        uri("map", 0, "count.txt", "map/0/count.txt"), uri("map", 0, "logs%2Ferr.txt", "map/0/logs/err.txt"),
        uri("map", 1, "count.txt", "map/1/count.txt"), uri("map", 1, "logs%2Ferr.txt", "map/1/logs/err.txt"),
        uri("map", 2, "count.txt", "map/2/count.txt"), uri("map", 2, "logs%2Ferr.txt", "map/2/logs/err.txt"),
    )


def test_n_to_n_gets_its_own_index_only() -> None:
    assert input_uris(WORDCOUNT, "per", 2, made, BASE) == (
        uri("map", 2, "count.txt", "map/2/count.txt"), uri("map", 2, "logs%2Ferr.txt", "map/2/logs/err.txt"))


def test_any_finished_skips_indices_that_did_not_succeed() -> None:
    def producer(stage: str, index: int) -> Producer | None:
        return None if (stage, index) in {("reduce", 0), ("map", 1)} else made(stage, index)

    assert input_uris(WORDCOUNT, "report", 0, producer, BASE) == (
        uri("map", 0, "count.txt", "map/0/count.txt"), uri("map", 0, "logs%2Ferr.txt", "map/0/logs/err.txt"),
        uri("map", 2, "count.txt", "map/2/count.txt"), uri("map", 2, "logs%2Ferr.txt", "map/2/logs/err.txt"),
    )


def test_a_missing_producer_under_all_succeeded_is_a_bug_said_loudly() -> None:
    with pytest.raises(ValueError, match=r"reduce\[0\] waits for map\[1\] \(all_succeeded\), which has no succeeded"):
        input_uris(WORDCOUNT, "reduce", 0, lambda s, i: None if i == 1 else made(s, i), BASE)


def test_stages_without_upstream_outputs_get_nothing() -> None:
    assert input_uris(WORDCOUNT, "map", 1, made, BASE) == ()
    spec = load_job(job({"name": "a", "command": "true"}, {"name": "b", "command": "true", "depends_on": ["a"]}))
    assert input_uris(spec, "b", 0, made, BASE) == ()


def test_download_uri_quotes_ids_and_carries_a_credential_as_the_password() -> None:
    odd = Producer(task_id="job x.map.0.1", agent_id="a/1", framework_id="f&1")
    assert download_uri("https://master:5080/", odd, "out dir/../x.txt", "t/k+n") == (
        "https://artifact:t%2Fk%2Bn@master:5080/tasks/job%20x.map.0.1/files/download"
        "?framework_id=f%261&agent_id=a%2F1&path=x.txt")
    assert input_uris(WORDCOUNT, "per", 0, made, BASE, credential=lambda p: f"tok-{p.agent_id}")[0].value == (
        "http://artifact:tok-agent-0@127.0.0.1:5080/tasks/wc-1.map.0.1/files/download"
        "?framework_id=fw-9&agent_id=agent-0&path=count.txt")
    with pytest.raises(ValueError, match="base must be the master's http"):
        download_uri("127.0.0.1:5080", odd, "x")


def test_input_path_is_stage_index_path() -> None:
    assert input_path("map", 3, "count.txt") == "map/3/count.txt"
    assert input_path("map", 0, "./out//part.txt") == "map/0/out/part.txt"


def test_input_count_is_the_worst_case() -> None:
    assert [input_count(WORDCOUNT, s) for s in ("map", "reduce", "report", "per")] == [0, 6, 7, 2]


def test_the_bound_is_checked_at_submission() -> None:
    over = job({"name": "map", "command": "true", "array": 501, "outputs": ["a", "b"]},
               {"name": "reduce", "command": "true", "depends_on": ["map"]})
    with pytest.raises(SpecError) as caught:
        load_job(over)
    assert caught.value.field == "stages[1].depends_on"
    assert str(caught.value.message).startswith(
        "each task of 'reduce' would fetch 1002 upstream outputs (map: 501 tasks x 2 outputs), more than the 1000")
    at_limit = job({"name": "map", "command": "true", "array": 500, "outputs": ["a", "b"]},
                   {"name": "reduce", "command": "true", "depends_on": ["map"]})
    check_inputs(load_job(at_limit))
    assert input_count(load_job(at_limit), "reduce") == MAX_INPUTS
    # n_to_n over a big array is one index per task: fine.
    load_job(job({"name": "map", "command": "true", "array": 10_000, "outputs": ["a"]},
                 {"name": "per", "command": "true", "array": 10_000,
                  "depends_on": [{"stage": "map", "condition": "n_to_n"}]}))


def test_the_base_is_the_masters_advertised_host_and_http_port() -> None:
    def info(address: str, http_port: int | None = 5080) -> MasterInfo:
        return MasterInfo(id="m", address=address, hostname="h", version="1", http_port=http_port)

    assert master_http_url(info("10.0.0.5:5050")) == "http://10.0.0.5:5080"
    assert master_http_url(info("[fd00::1]:5050")) == "http://[fd00::1]:5080"
    assert master_http_url(info("master.example:5050"), "https") == "https://master.example:5080"
    assert master_http_url(info("10.0.0.5:5050", None)) is None


def test_the_credential_of_a_framework_holding_the_cluster_token_is_each_producers_task_files_token() -> None:
    from tepui.sdk.relay_tokens import task_files_token

    uris = input_uris(WORDCOUNT, "reduce", 0, made, BASE, credential=task_files_credential("cluster-token-0123456789"))
    tokens = {task_files_token("cluster-token-0123456789", "fw-9", f"wc-1.map.{i}.1") for i in range(3)}
    assert {u.value.split("@")[0].removeprefix("http://artifact:") for u in uris} == tokens
    assert all("cluster-token" not in u.value for u in uris)
