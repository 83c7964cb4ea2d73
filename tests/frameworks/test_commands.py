"""API commands of the services framework: answers, effects and every refusal.

A refused command must change nothing: after each CommandError the state has no pending write
(``flush()`` is None) and the app is as it was.
"""

from __future__ import annotations

from typing import Any

import pytest

from tepui.frameworks.services import commands
from tepui.frameworks.services.commands import CommandError
from tepui.frameworks.services.effects import Demand, Kill, Persist, Publish
from tepui.sdk import TaskState
from tests.frameworks.test_core import ROOM, Sim, killed_ids, offer, published, running_app, spec


def refused(sim: Sim, call: Any, *args: Any, **kwargs: Any) -> CommandError:
    """Runs a command that must fail, and checks that it changed nothing."""
    apps = {k: (a.version, a.config_version, list(a.versions), a.removing) for k, a in sim.state.apps.items()}
    deployments = {k: d.status for k, d in sim.state.deployments.items()}
    pending = dict(sim.core.pending)
    with pytest.raises(CommandError) as info:
        call(sim.core, *args, **kwargs)
    assert sim.state.flush() is None
    assert {k: (a.version, a.config_version, list(a.versions), a.removing) for k, a in sim.state.apps.items()} == apps
    assert {k: d.status for k, d in sim.state.deployments.items()} == deployments
    assert sim.core.pending == pending
    return info.value


# --- deploy --------------------------------------------------------------------------------


def test_deploy_unchanged_spec_answers_without_a_deployment() -> None:
    sim = Sim()
    version = running_app(sim, spec(instances=2), 1.0)
    answer, effects = sim.deploy(spec(instances=2), 10.0)
    assert answer == {"app": "/web", "version": version, "deployment": None, "created": False}
    assert effects == []


def test_deploy_changed_spec_updates_and_instances_only_is_a_scale() -> None:
    sim = Sim()
    v1 = running_app(sim, spec(instances=2), 1.0)
    answer, effects = sim.deploy(spec(instances=3), 10.0)
    assert answer["created"] is False and answer["version"] != v1
    assert sim.deployment(answer["deployment"]).kind == "scale"
    assert killed_ids(effects) == []
    assert effects[-1] == Demand(((ROOM, 1),), revive=True)
    sim.offers(11.0, offer("o1"))
    sim.run_all(12.0)
    answer, _ = sim.deploy(spec(instances=3, env={"A": "1"}), 20.0)
    assert sim.deployment(answer["deployment"]).kind == "deploy"
    assert sim.state.apps["/web"].config_version == answer["version"]


def test_deploy_while_a_deployment_runs_is_locked_unless_forced() -> None:
    sim = Sim()
    first, _ = sim.deploy(spec(instances=2), 1.0)
    error = refused(sim, commands.deploy, spec(instances=2, command="serve --v2"), 2.0)
    assert (error.status, error.reason, error.field) == (409, "APP_LOCKED", None)
    assert first["deployment"] in error.message and "--force" in error.message
    assert error.body() == {"error": error.message, "reason": "APP_LOCKED"}

    answer, effects = sim.deploy(spec(instances=2, command="serve --v2"), 3.0, force=True)
    old = sim.deployment(first["deployment"])
    assert old.status == "CANCELLED" and old.finished_at == 3.0
    assert old.message == "superseded by a deploy to a new version"
    assert isinstance(effects[0], Persist)
    assert [e.kind for e in effects if isinstance(e, Publish)] == ["deployment_finished", "app_changed",
                                                                    "deployment_step"]
    assert published(effects, "deployment_finished") == [old.view()]
    assert sim.state.running_deployment("/web").id == answer["deployment"]


def test_force_supersedes_for_scale_restart_and_rollback_too() -> None:
    sim = Sim()
    running_app(sim, spec(instances=1), 1.0)
    first, _ = sim.deploy(spec(instances=1, command="serve --v2"), 10.0)
    for name, args in (("scale", ("/web", 2)), ("restart", ("/web",)), ("rollback", ("/web", None))):
        error = refused(sim, getattr(commands, name), *args, 11.0)
        assert (error.status, error.reason) == (409, "APP_LOCKED"), name
    answer, _ = sim.command("scale", "/web", 2, 12.0, force=True)
    assert sim.deployment(first["deployment"]).status == "CANCELLED"
    assert sim.deployment(answer["deployment"]).status == "RUNNING"


# --- scale ---------------------------------------------------------------------------------


@pytest.mark.parametrize("instances", [-1, "3", 2.5, True, None])
def test_scale_refuses_anything_but_a_whole_number(instances: Any) -> None:
    sim = Sim()
    running_app(sim, spec(instances=1), 1.0)
    error = refused(sim, commands.scale, "/web", instances, 5.0)
    assert (error.status, error.reason, error.field) == (422, "INVALID_APP", "instances")
    assert error.body() == {"error": f"instances must be a whole number >= 0, got {instances!r}",
                            "reason": "INVALID_APP", "field": "instances"}


def test_scale_to_zero_kills_everything_and_succeeds_when_they_are_gone() -> None:
    sim = Sim()
    running_app(sim, spec(instances=2), 1.0)
    answer, effects = sim.command("scale", "/web", 0, 5.0)
    assert killed_ids(effects) == ["web.id3", "web.id2"]
    sim.confirm_kills(6.0)
    assert sim.deployment(answer["deployment"]).status == "SUCCEEDED"
    assert sim.live() == []
    assert "/web" in sim.state.apps


# --- unknown things ------------------------------------------------------------------------


@pytest.mark.parametrize("call,args", [
    (commands.scale, ("/nope", 2, 1.0)),
    (commands.restart, ("/nope", 1.0)),
    (commands.rollback, ("/nope", None, 1.0)),
    (commands.remove, ("/nope", 1.0)),
])
def test_unknown_app_is_404_and_names_the_known_ones(call: Any, args: tuple[Any, ...]) -> None:
    sim = Sim()
    sim.deploy(spec(instances=0), 0.5)
    error = refused(sim, call, *args)
    assert (error.status, error.reason) == (404, "UNKNOWN_APP")
    assert error.message == "no app '/nope' (apps: /web); `tepui apps list` shows them all"


def test_rollback_with_only_one_version_is_409() -> None:
    sim = Sim()
    running_app(sim, spec(instances=1), 1.0)
    error = refused(sim, commands.rollback, "/web", None, 5.0)
    assert (error.status, error.reason) == (409, "NO_EARLIER_VERSION")
    assert error.message == "app /web has only one version; there is nothing to roll back to"


def test_rollback_to_an_unknown_version_is_404() -> None:
    sim = Sim()
    v1 = running_app(sim, spec(instances=1), 1.0)
    error = refused(sim, commands.rollback, "/web", "2001-01-01T00:00:00.000Z", 5.0)
    assert (error.status, error.reason) == (404, "UNKNOWN_VERSION")
    assert v1 in error.message


def test_cancel_unknown_or_finished_deployment() -> None:
    sim = Sim()
    running_app(sim, spec(instances=1), 1.0)
    error = refused(sim, commands.cancel, "nope", False, 5.0)
    assert (error.status, error.reason) == (404, "UNKNOWN_DEPLOYMENT")
    error = refused(sim, commands.cancel, "id1", False, 5.0)
    assert (error.status, error.reason) == (409, "DEPLOYMENT_FINISHED")
    assert "SUCCEEDED" in error.message


def test_cancel_of_a_first_deployment_has_nothing_to_roll_back_to() -> None:
    sim = Sim()
    answer, _ = sim.deploy(spec(instances=2), 1.0)
    reply, effects = sim.command("cancel", answer["deployment"], False, 2.0)
    assert reply == {"deployment": answer["deployment"], "rollback": None}
    assert sim.deployment(answer["deployment"]).status == "CANCELLED"
    # The app stays at its only version, and keeps converging.
    assert sim.core.pending == {"/web": 2}


# --- remove --------------------------------------------------------------------------------


def test_commands_on_an_app_being_removed_are_locked() -> None:
    sim = Sim()
    running_app(sim, spec(instances=1), 1.0)
    sim.command("remove", "/web", 5.0)
    for call, args in ((commands.deploy, (spec(instances=3), 6.0)), (commands.scale, ("/web", 3, 6.0)),
                       (commands.restart, ("/web", 6.0))):
        error = refused(sim, call, *args)
        assert (error.status, error.reason) == (409, "APP_LOCKED")
        assert "being removed" in error.message
    # Also with force: a removal cannot be superseded, only cancelled.
    error = refused(sim, commands.deploy, spec(instances=3), 6.0, force=True)
    assert error.reason == "APP_LOCKED"


def test_remove_supersedes_a_running_deployment() -> None:
    sim = Sim()
    first, _ = sim.deploy(spec(instances=2), 1.0)
    sim.offers(2.0, offer("o1"))
    answer, effects = sim.command("remove", "/web", 3.0)
    assert sim.deployment(first["deployment"]).status == "CANCELLED"
    assert sim.deployment(first["deployment"]).message == "superseded by the removal of the app"
    assert sim.deployment(answer["deployment"]).kind == "remove"
    assert effects[0].deletes == () and [(ns, key) for ns, key, _ in effects[0].puts] == [
        ("deployments", first["deployment"]), ("apps", "/web"), ("deployments", answer["deployment"]),
        ("instances", "web.id2"), ("instances", "web.id3")]
    # Nothing was waiting (both launched), so the demand stays empty and is not declared again.
    assert effects[1:] == [Publish("deployment_finished", sim.deployment(first["deployment"]).view()),
                           Publish("deployment_step", sim.deployment(answer["deployment"]).view()),
                           Kill("web.id2", "a1", None), Kill("web.id3", "a1", None)]


def test_cancel_of_a_removal_keeps_the_app() -> None:
    sim = Sim()
    running_app(sim, spec(instances=2), 1.0)
    answer, _ = sim.command("remove", "/web", 5.0)
    sim.update(6.0, "web.id2", TaskState.KILLED)
    reply, effects = sim.command("cancel", answer["deployment"], False, 7.0)
    assert reply == {"deployment": answer["deployment"], "rollback": None}
    assert not sim.state.apps["/web"].removing
    # The killed instance is replaced; the one being killed is not taken back.
    assert sim.core.pending == {"/web": 2}
    assert effects[-1] == Demand(((ROOM, 2),), revive=True)
    sim.update(8.0, "web.id3", TaskState.KILLED)
    assert "/web" in sim.state.apps


# --- request bodies ------------------------------------------------------------------------


def test_parse_spec_json_and_yaml() -> None:
    body = b'{"id": "/web", "command": "serve", "cpus": 0.5, "mem": 128, "instances": 3}'
    assert commands.parse_spec(body, "application/json") == spec(instances=3)
    yaml_body = b"id: /web\ncommand: serve\ncpus: 0.5\nmem: 128\ninstances: 3\n"
    assert commands.parse_spec(yaml_body, "application/yaml") == spec(instances=3)
    # No content type: JSON when it starts with {, else YAML.
    assert commands.parse_spec(yaml_body, "") == spec(instances=3)


def test_parse_spec_errors_name_the_field() -> None:
    with pytest.raises(CommandError) as info:
        commands.parse_spec(b'{"id": "/web", "command": "serve", "instances": -1}', "application/json")
    assert (info.value.status, info.value.reason, info.value.field) == (422, "INVALID_APP", "instances")
    assert info.value.body() == {"error": "invalid app spec: instances: must be >= 0, got -1",
                                 "reason": "INVALID_APP", "field": "instances"}
    with pytest.raises(CommandError) as info:
        commands.parse_spec(b'{"id": "/web", "cmd": "serve"}', "application/json")
    assert info.value.field == "cmd" and "did you mean command?" in info.value.message
    with pytest.raises(CommandError) as info:
        commands.parse_spec(b"\xff\xfe", "application/json")
    assert (info.value.status, info.value.reason) == (400, "BAD_REQUEST")
