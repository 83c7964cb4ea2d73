"""Job spec parsing: valid YAML and JSON jobs, the defaults each prior art suggests, the helpers the
core uses, and each invalid class refused with the exact field named and what to write."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tepui.frameworks.batch.spec import (
    LIMITS,
    Constraint,
    JobSpec,
    SpecError,
    load_job,
    parse_job,
)
from tepui.sdk import Resources

DOCS = Path(__file__).resolve().parents[3] / "docs" / "batch.md"

FULL_YAML = """
name: wordcount
user: ada
queue: analytics
priority: 50
deadline: PT2H
suspend: true
ttl_after_finished: P7D
labels: {team: data}
stages:
  - name: map
    command: wc -w chunk-$TEPUI_TASK_INDEX > out/count.txt
    resources: {cpus: 0.5, mem: 256, disk: 10, gpus: 1, ports: 2}
    env: {LANG: C.UTF-8}
    uris: [https://example.com/chunks.tgz]
    constraints: [[rack, MAX_PER, 2], [hostname, UNIQUE]]
    array: 8
    parallelism: 4
    timeout: PT10M
    retries:
      attempts: 3
      backoff: {initial: PT5S, factor: 3, max: PT1M}
      rules:
        - {action: fail_stage, on_exit_codes: {values: [42]}}
        - {action: ignore, on_reasons: [preempted]}
        - {action: fail_index, on_exit_codes: {operator: not_in, values: [1, 2]}}
    outputs: [out/count.txt]
  - name: reduce
    container: {image: 'python:3.11-slim', network: HOST}
    args: [python3, reduce.py]
    depends_on: [{stage: map, condition: n_to_n}]
    array: 8
  - name: report
    command: ./report.sh
    depends_on: [map, {stage: reduce, condition: any_finished}]
  - name: mpi
    command: mpirun ./solve
    array: 4
    gang: true
"""


def test_full_yaml_job() -> None:
    job = parse_job(FULL_YAML, "yaml")
    assert (job.name, job.user, job.queue, job.priority, job.suspend) == ("wordcount", "ada", "analytics", 50, True)
    assert (job.deadline_seconds, job.ttl_seconds, job.labels) == (7200.0, 7 * 86400.0, {"team": "data"})
    map_, reduce, report, mpi = job.stages
    assert map_.resources.scalars() == Resources.parse("cpus:0.5;mem:256;disk:10;gpus:1")
    assert map_.resources.ports == 2
    assert map_.constraints == (Constraint("rack", "MAX_PER", "2"), Constraint("hostname", "UNIQUE"))
    assert (map_.array, map_.parallelism, map_.effective_parallelism, map_.timeout_seconds) == (8, 4, 4, 600.0)
    assert map_.outputs == ("out/count.txt",)
    assert reduce.container is not None and reduce.container.network == "HOST"
    assert reduce.args == ("python3", "reduce.py") and reduce.edges == (("map", "n_to_n"),)
    assert report.edges == (("map", "all_succeeded"), ("reduce", "any_finished"))
    assert mpi.gang and mpi.effective_parallelism == 4
    assert job.task_count == 21
    assert job.stage_order() == ("map", "reduce", "report", "mpi")
    assert job.downstream("map") == ("reduce", "report")
    assert job.upstream_indices("reduce", 5) == {"map": range(5, 6)}
    assert job.upstream_indices("report", 0) == {"map": range(8), "reduce": range(8)}
    with pytest.raises(KeyError):
        job.stage("nope")
    assert job.task_env("map", 3) == {
        "LANG": "C.UTF-8", "TEPUI_JOB": "wordcount", "TEPUI_STAGE": "map", "TEPUI_TASK_INDEX": "3", "TEPUI_TASK_COUNT": "8",
    }


def test_failure_rules_classify_in_order() -> None:
    retries = parse_job(FULL_YAML).stage("map").retries
    assert retries.classify(42, None) == "fail_stage"
    assert retries.classify(None, "preempted") == "ignore"
    assert retries.classify(7, None) == "fail_index"  # not in [1, 2]
    assert retries.classify(1, None) == "count"  # no rule matches
    assert retries.classify(None, "timeout") == "count"
    assert retries.classify(None, "agent_lost") == "ignore"  # always, whatever the rules


def test_backoff_delays() -> None:
    retries = parse_job(FULL_YAML).stage("map").retries
    assert [retries.backoff.delay(k) for k in range(5)] == [5.0, 15.0, 45.0, 60.0, 60.0]
    default = parse_job("name: j\nstages: [{name: s, command: x}]\n").stages[0].retries.backoff
    assert [default.delay(k) for k in (0, 1, 2, 5, 6, 1000)] == [10.0, 20.0, 40.0, 320.0, 360.0, 360.0]


def test_defaults() -> None:
    job = parse_job("name: j\nstages: [{name: s, command: 'true'}]\n")
    assert (job.user, job.queue, job.priority, job.deadline, job.suspend) == (None, "default", 0, None, False)
    assert (job.ttl_after_finished, job.ttl_seconds, job.labels) == ("P30D", 30 * 86400.0, {})
    stage = job.stages[0]
    assert stage.resources.scalars() == Resources.of(cpus=1, mem=128)
    assert (stage.resources.disk, stage.resources.gpus, stage.resources.ports) == (0.0, 0, 0)
    assert (stage.array, stage.parallelism, stage.effective_parallelism, stage.timeout_seconds) == (1, None, 1, None)
    assert (stage.retries.attempts, stage.retries.rules) == (1, ())
    assert (stage.retries.backoff.initial, stage.retries.backoff.factor, stage.retries.backoff.max) == ("PT10S", 2.0, "PT6M")
    assert (stage.gang, stage.outputs, stage.depends_on, stage.env, stage.uris) == (False, (), (), {}, ())
    kept_forever = parse_job("name: j\nttl_after_finished: null\nstages: [{name: s, command: x}]\n")
    assert kept_forever.ttl_seconds is None
    at_once = parse_job("name: j\nttl_after_finished: PT0S\nstages: [{name: s, command: x}]\n")
    assert at_once.ttl_seconds == 0.0


def test_json_detected_round_trips_and_is_frozen() -> None:
    job = parse_job(FULL_YAML)
    text = json.dumps(job.to_data())
    assert parse_job(text) == job == parse_job(text.encode(), "json") == load_job(json.loads(text))
    assert "parallelism" not in job.to_data()["stages"][1]  # defaults left out of the record
    with pytest.raises(AttributeError):
        job.name = "other"  # type: ignore[misc]  # the point: a frozen Struct refuses it
    with pytest.raises(AttributeError):
        job.stages.append(job.stages[0])  # type: ignore[attr-defined]  # sequences are tuples


def test_the_docs_example_parses() -> None:
    text = DOCS.read_text()
    section = text[text.index("## Job spec"):]
    example = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert example is not None, "docs/batch.md's Job spec section has no yaml example"
    job = parse_job(example.group(1))
    assert job.stage_order()[0] == job.stages[0].name
    assert isinstance(job, JobSpec)


def error(text: str | bytes) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_job(text)
    return info.value


JOB = "name: j\nstages:\n"
ONE = JOB + "  - name: s\n    command: run\n"


def stage(extra: str) -> str:
    return ONE + "".join(f"    {line}\n" for line in extra.splitlines())


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        # unknown fields, at any depth, with hints for other schedulers' names
        (JOB.replace("name: j", "name: j\nqeue: x") + "  - {name: s, command: x}\n", "qeue", "unknown field: check the spelling"),
        (stage("completions: 4"), "stages[0].completions", "did you mean array?"),
        (stage("backoffLimit: 3"), "stages[0].backoffLimit", "did you mean retries.attempts (tries including the first)?"),
        (stage("cpus: 2"), "stages[0].cpus", "did you mean resources.cpus?"),
        (stage("retries: {limit: 2}"), "stages[0].retries.limit", "did you mean attempts"),
        (JOB.replace("name: j", "name: j\nactiveDeadlineSeconds: 60") + "  - {name: s, command: x}\n",
         "activeDeadlineSeconds", "did you mean deadline (an ISO 8601 duration such as PT2H)?"),
        # types and required fields
        ("stages: [{name: s, command: x}]\n", "name", "required field is missing"),
        ("name: j\n", "stages", "required field is missing"),
        (JOB + "  - {command: x}\n", "stages[0].name", "required field is missing"),
        (stage("array: many"), "stages[0].array", "expected int, got str"),
        (stage("env: {DEBUG: yes}"), "stages[0].env.DEBUG", "expected str, got bool (quote values such as yes"),
        (stage("env: {1: one}"), "stages[0].env", "keys expected str, got int"),
        (stage("retries: {rules: [{action: count, on_exit_codes: {operator: in_, values: [1]}}]}"),
         "stages[0].retries.rules[0].on_exit_codes.operator", "invalid enum value 'in_'"),
        # job fields
        ("name: Big_Job\nstages: [{name: s, command: x}]\n", "name", "job name 'Big_Job' must be lowercase letters"),
        ("name: " + "a" * 64 + "\nstages: [{name: s, command: x}]\n", "name", "at most 63 characters, got 64"),
        ("name: j\nqueue: ''\nstages: [{name: s, command: x}]\n", "queue", "queue name '' must be lowercase"),
        ("name: j\nuser: ' '\nstages: [{name: s, command: x}]\n", "user", "leave it out and the API fills in the caller"),
        ("name: j\npriority: 1001\nstages: [{name: s, command: x}]\n", "priority", "must be between -1000 and 1000"),
        ("name: j\ndeadline: P1M\nstages: [{name: s, command: x}]\n", "deadline", "write days instead (P30D, P365D)"),
        ("name: j\ndeadline: PT0S\nstages: [{name: s, command: x}]\n", "deadline", "must be longer than zero"),
        ("name: j\ndeadline: 3600\nstages: [{name: s, command: x}]\n", "deadline",
         "expected str | null, got int: write an ISO 8601 duration such as PT30S, PT10M or PT2H"),
        ("name: j\nttl_after_finished: forever\nstages: [{name: s, command: x}]\n", "ttl_after_finished", "not an ISO 8601 duration"),
        ("name: j\nlabels: {'': x}\nstages: [{name: s, command: x}]\n", "labels", "label names are 1 to 63 characters"),
        ("name: j\nstages: []\n", "stages", "a job needs at least one stage"),
        # stage names
        (JOB + "  - {name: s, command: x}\n  - {name: s, command: y}\n", "stages[1].name",
         "stage 's' is already stages[0]: stage names are unique in a job"),
        (JOB + "  - {name: Map, command: x}\n", "stages[0].name", "stage name 'Map' must be lowercase"),
        (JOB + "  - {name: map-, command: x}\n", "stages[0].name", "ending with a letter or digit"),
        # command / container / resources
        (JOB + "  - {name: s}\n", "stages[0].command", "a stage needs a command, args or a container"),
        (stage("args: [x]"), "stages[0].args", "not both"),
        (JOB + "  - {name: s, command: '  '}\n", "stages[0].command", "must not be empty"),
        (JOB + "  - {name: s, args: []}\n", "stages[0].args", "must not be empty"),
        (JOB + "  - {name: s, container: {image: ''}}\n", "stages[0].container.image", "must name a Docker image"),
        (JOB + "  - {name: s, container: {image: x, network: OVERLAY}}\n", "stages[0].container.network", "unknown network"),
        (JOB + "  - {name: s, container: {image: x, type: MESOS}}\n", "stages[0].container.type", "unknown container type"),
        (stage("resources: {mem: -1}"), "stages[0].resources.mem", "must be >= 0, got -1.0"),
        (stage("resources: {cpus: 0, mem: 0}"), "stages[0].resources.cpus", "needs some cpus or mem"),
        (stage("resources: {ports: 65}"), "stages[0].resources.ports", "at most 64 host ports"),
        # env, uris, constraints
        (stage("env: {TEPUI_TASK_INDEX: '3'}"), "stages[0].env.TEPUI_TASK_INDEX", "set by the framework"),
        (stage("env: {'A=B': x}"), "stages[0].env.A=B", "variable names are letters, digits and '_'"),
        (stage("uris: ['']"), "stages[0].uris[0]", "must not be empty"),
        (stage("constraints: [[hostname, UNIQ]]"), "stages[0].constraints[0]", "unknown operator 'UNIQ' (UNIQUE, CLUSTER"),
        (stage("constraints: [[rack, MAX_PER]]"), "stages[0].constraints[0]", "MAX_PER needs a value: write [rack, MAX_PER, 2]"),
        (stage("constraints: [[rack, MAX_PER, 0]]"), "stages[0].constraints[0]", "MAX_PER count must be an integer >= 1"),
        (stage("constraints: [[rack, LIKE, 'r[']]"), "stages[0].constraints[0]", "invalid regular expression"),
        (stage("constraints: [[hostname, UNIQUE, x]]"), "stages[0].constraints[0]", "UNIQUE takes no value"),
        # array, parallelism, gang, timeout
        (stage("array: 0"), "stages[0].array", "must be between 1 and 100000 tasks, got 0"),
        (stage("array: 100001"), "stages[0].array", "must be between 1 and 100000 tasks, got 100001"),
        (stage("array: 4\nparallelism: 5"), "stages[0].parallelism", "must be between 1 and array (4), got 5"),
        (stage("parallelism: 0"), "stages[0].parallelism", "must be between 1 and array (1), got 0"),
        (stage("gang: true"), "stages[0].gang", "a gang needs at least 2 tasks launched together: set array >= 2, got 1"),
        (stage("gang: true\narray: 4\nparallelism: 2"), "stages[0].parallelism", "a gang runs all 4 tasks at once"),
        (stage("timeout: 10m"), "stages[0].timeout", "not an ISO 8601 duration"),
        (stage("timeout: PT0S"), "stages[0].timeout", "must be longer than zero"),
        # retries
        (stage("retries: {attempts: 0}"), "stages[0].retries.attempts", "must be between 1 and 100 (tries including the first; 1 = no retry), got 0"),
        (stage("retries: {attempts: 101}"), "stages[0].retries.attempts", "got 101"),
        (stage("retries: {backoff: {factor: 0.5}}"), "stages[0].retries.backoff.factor", "must be between 1.0 and 10.0"),
        (stage("retries: {backoff: {initial: PT1M, max: PT10S}}"), "stages[0].retries.backoff.max", "must be at least initial (PT1M)"),
        (stage("retries: {backoff: {initial: P1Y}}"), "stages[0].retries.backoff.initial", "years and months"),
        (stage("retries: {rules: [{action: restart, on_reasons: [timeout]}]}"), "stages[0].retries.rules[0].action",
         "unknown action 'restart' (count, ignore, fail_index, fail_stage)"),
        (stage("retries: {rules: [{action: count}]}"), "stages[0].retries.rules[0]", "give exactly one of on_exit_codes and on_reasons"),
        (stage("retries: {rules: [{action: count, on_reasons: [timeout], on_exit_codes: {values: [1]}}]}"),
         "stages[0].retries.rules[0]", "give exactly one"),
        (stage("retries: {rules: [{action: ignore, on_exit_codes: {values: [0]}}]}"),
         "stages[0].retries.rules[0].on_exit_codes.values[0]", "exit code 0 is success"),
        (stage("retries: {rules: [{action: ignore, on_exit_codes: {values: [1, 256]}}]}"),
         "stages[0].retries.rules[0].on_exit_codes.values[1]", "exit codes are 0..255 (128+N for signal N), got 256"),
        (stage("retries: {rules: [{action: ignore, on_exit_codes: {values: []}}]}"),
         "stages[0].retries.rules[0].on_exit_codes.values", "list at least one exit code"),
        (stage("retries: {rules: [{action: ignore, on_reasons: [agent_lost]}]}"),
         "stages[0].retries.rules[0].on_reasons[0]", "always retried without spending an attempt"),
        (stage("retries: {rules: [{action: ignore, on_reasons: [oom]}]}"),
         "stages[0].retries.rules[0].on_reasons[0]", "unknown reason 'oom' (timeout, memory_limit"),
        (stage("retries: {rules: [{action: ignore, on_reasons: []}]}"),
         "stages[0].retries.rules[0].on_reasons", "list at least one reason"),
        # outputs
        (stage("outputs: [/etc/passwd]"), "stages[0].outputs[0]", "must be relative to the task's sandbox"),
        (stage("outputs: ['~/x']"), "stages[0].outputs[0]", "must be relative"),
        (stage("outputs: [out/../../x]"), "stages[0].outputs[0]", "'..' is not allowed"),
        (stage("outputs: [..]"), "stages[0].outputs[0]", "'..' is not allowed"),
        (stage("outputs: [./]"), "stages[0].outputs[0]", "names the whole sandbox"),
        (stage("outputs: ['a\\\\b']"), "stages[0].outputs[0]", "must be a plain POSIX path"),
        (stage("outputs: [out/a, ./out/a]"), "stages[0].outputs[1]", "listed twice"),
        (stage("outputs: ['']"), "stages[0].outputs[0]", "must not be empty"),
        # the DAG
        (stage("depends_on: [s]"), "stages[0].depends_on[0].stage", "stage 's' cannot depend on itself"),
        (stage("depends_on: [x]"), "stages[0].depends_on[0].stage", "no stage named 'x' in this job (stages: none)"),
        (stage("depends_on: [{stage: s, condition: afterok}]"), "stages[0].depends_on[0].condition",
         "unknown condition 'afterok' (all_succeeded, any_finished, n_to_n)"),
        (JOB + "  - {name: a, command: x, depends_on: [c]}\n  - {name: b, command: x, depends_on: [a]}\n"
         "  - {name: c, command: x, depends_on: [b]}\n", "stages[0].depends_on", "dependency cycle a -> c -> b -> a"),
        (JOB + "  - {name: a, command: x, array: 3}\n  - {name: b, command: x, array: 2, depends_on: [{stage: a, condition: n_to_n}]}\n",
         "stages[1].depends_on[0].condition", "'b' has array 2, 'a' has array 3"),
        (JOB + "  - {name: a, command: x, array: 2}\n"
         "  - {name: b, command: x, array: 2, gang: true, depends_on: [{stage: a, condition: n_to_n}]}\n",
         "stages[1].depends_on[0].condition", "a gang stage launches all its tasks together"),
        # documents
        ("- a list\n", "(document)", "must be a mapping"),
        ("", "(document)", "got an empty document"),
        ("{bad json", "(document)", "invalid JSON"),
        ("name: [unclosed\n", "(document)", "invalid YAML"),
        (b"name: \xff\n", "(document)", "is not UTF-8 (byte 6)"),
    ],
)
def test_invalid_jobs_name_the_field(text: str, field: str, message: str) -> None:
    err = error(text)
    assert err.field == field, str(err)
    assert message in err.message, str(err)
    assert str(err) == f"{field}: {err.message}"


def test_unknown_format() -> None:
    with pytest.raises(SpecError, match=r"^\(format\): unknown format 'toml'"):
        parse_job("name = 'j'", "toml")  # type: ignore[arg-type]  # the point: a bad format at run time


# --- a hostile submission cannot blow the framework's memory ----------------------------------


def test_yaml_aliases_are_refused() -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")
    )
    err = error(laughs)
    assert err.field == "(document)" and "YAML aliases (*name) are not accepted" in err.message


def test_oversized_documents_are_refused_before_parsing() -> None:
    err = error("#" * (LIMITS["document_bytes"] + 1))
    assert (err.field, err.message) == ("(document)", f"is {LIMITS['document_bytes'] + 1} bytes, more than the 1048576 allowed")


def many(count: int, item: str) -> str:
    return "[" + ", ".join(item.format(i=i) for i in range(count)) + "]"


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (JOB + "".join(f"  - {{name: s{i}, command: x}}\n" for i in range(101)), "stages", "at most 100 stages per job, got 101"),
        (JOB + "".join(f"  - {{name: s{i}, command: x, array: 50000}}\n" for i in range(3)), "stages",
         "the stages' arrays add up to 150000 tasks, more than the 100000 a job may hold: split the job"),
        (stage("env: {" + ", ".join(f"V{i}: x" for i in range(257)) + "}"), "stages[0].env", "at most 256 variables, got 257"),
        (stage("env: {BIG: '" + "x" * 70000 + "'}"), "stages[0].env", "add up to 70003 bytes, more than 65536"),
        (JOB + "  - {name: s, command: '" + "x" * 70000 + "'}\n", "stages[0].command", "at most 65536 bytes"),
        (stage("uris: " + many(65, "u{i}")), "stages[0].uris", "at most 64 uris per stage, got 65"),
        (stage("outputs: " + many(65, "o{i}")), "stages[0].outputs", "at most 64 outputs per stage, got 65"),
        (stage("constraints: " + many(33, "[r{i}, UNIQUE]")), "stages[0].constraints", "at most 32 constraints"),
        ("name: j\nlabels: {" + ", ".join(f"l{i}: x" for i in range(65)) + "}\nstages: [{name: s, command: x}]\n",
         "labels", "at most 64 labels, got 65"),
    ],
)
def test_sizes_are_bounded(text: str, field: str, message: str) -> None:
    err = error(text)
    assert err.field == field, str(err)
    assert message in err.message, str(err)
