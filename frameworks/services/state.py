"""The services framework's records in memory, with the writes a batch made.

Why a separate object: the core decides, this object remembers — and remembers what changed, so
that every batch of the core ends with exactly one :class:`~.effects.Persist` holding the records
it touched (one store transaction, one fsync per batch rather than per record). Loading is the
inverse: the shell reads the four namespaces and :meth:`ServiceState.load` rebuilds the same
state a framework had before it stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from tepui.frameworks.services.effects import Persist
from tepui.frameworks.services.records import AppRecord, DeploymentRecord, InstanceRecord, VersionRecord
from tepui.frameworks.services.spec import AppSpec, app_from_data

NS_FRAMEWORK, NS_APPS, NS_VERSIONS, NS_INSTANCES, NS_DEPLOYMENTS = (
    "framework", "apps", "versions", "instances", "deployments")
FINISHED_KEPT = 10  # finished deployments kept per app (the history `apps deployments` shows)


def version_key(app: str, version: str) -> str:
    return f"{app}@{version}"


class ServiceState:
    """Apps, versions, instances and deployments, indexed the ways the core asks for them."""

    def __init__(self) -> None:
        self.framework_id: str | None = None
        self.apps: dict[str, AppRecord] = {}
        self.versions: dict[tuple[str, str], VersionRecord] = {}
        self.instances: dict[str, InstanceRecord] = {}
        self.deployments: dict[str, DeploymentRecord] = {}
        self._specs: dict[tuple[str, str], AppSpec] = {}
        self._puts: dict[tuple[str, str], msgspec.Struct | str] = {}
        self._deletes: set[tuple[str, str]] = set()

    # --- loading --------------------------------------------------------------------------

    @classmethod
    def load(cls, framework_id: str | None, apps: Iterable[AppRecord], versions: Iterable[VersionRecord],
             instances: Iterable[InstanceRecord], deployments: Iterable[DeploymentRecord]) -> ServiceState:
        state = cls()
        state.framework_id = framework_id
        state.apps = {a.id: a for a in apps}
        state.versions = {(v.app, v.version): v for v in versions}
        state.instances = {i.id: i for i in instances}
        state.deployments = {d.id: d for d in deployments}
        return state

    @staticmethod
    def record_types() -> Mapping[str, type[Any]]:
        return {NS_APPS: AppRecord, NS_VERSIONS: VersionRecord, NS_INSTANCES: InstanceRecord,
                NS_DEPLOYMENTS: DeploymentRecord}

    # --- reads ----------------------------------------------------------------------------

    def spec(self, app: str, version: str) -> AppSpec:
        key = (app, version)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = app_from_data(self.versions[key].spec)
        return spec

    def current_spec(self, app: str) -> AppSpec:
        return self.spec(app, self.apps[app].version)

    def instances_of(self, app: str) -> list[InstanceRecord]:
        return [i for i in self.instances.values() if i.app == app]

    def running_deployment(self, app: str) -> DeploymentRecord | None:
        for deployment in self.deployments.values():
            if deployment.app == app and deployment.status == "RUNNING":
                return deployment
        return None

    # --- writes (remembered for the batch's Persist) ----------------------------------------

    def _put(self, ns: str, key: str, value: msgspec.Struct | str) -> None:
        self._deletes.discard((ns, key))
        self._puts[(ns, key)] = value

    def _delete(self, ns: str, key: str) -> None:
        self._puts.pop((ns, key), None)
        self._deletes.add((ns, key))

    def set_framework_id(self, framework_id: str) -> None:
        if framework_id != self.framework_id:
            self.framework_id = framework_id
            self._put(NS_FRAMEWORK, "id", framework_id)

    def save_app(self, app: AppRecord) -> None:
        self.apps[app.id] = app
        self._put(NS_APPS, app.id, app)

    def save_version(self, version: VersionRecord) -> None:
        self.versions[(version.app, version.version)] = version
        self._put(NS_VERSIONS, version_key(version.app, version.version), version)

    def save_instance(self, instance: InstanceRecord) -> None:
        self.instances[instance.id] = instance
        self._put(NS_INSTANCES, instance.id, instance)

    def drop_instance(self, task_id: str) -> None:
        if self.instances.pop(task_id, None) is not None:
            self._delete(NS_INSTANCES, task_id)

    def save_deployment(self, deployment: DeploymentRecord) -> None:
        self.deployments[deployment.id] = deployment
        self._put(NS_DEPLOYMENTS, deployment.id, deployment)
        if deployment.status != "RUNNING":
            finished = sorted((d for d in self.deployments.values()
                               if d.app == deployment.app and d.status != "RUNNING"),
                              key=lambda d: (d.finished_at or 0.0, d.id))
            for old in finished[:-FINISHED_KEPT]:
                del self.deployments[old.id]
                self._delete(NS_DEPLOYMENTS, old.id)

    def forget_version(self, app: str, version: str) -> None:
        if self.versions.pop((app, version), None) is not None:
            self._specs.pop((app, version), None)
            self._delete(NS_VERSIONS, version_key(app, version))

    def drop_app(self, app: str) -> None:
        """Forget an app and its versions (its instances are gone already; its finished
        deployments stay in the history until pushed out)."""
        record = self.apps.pop(app, None)
        if record is None:
            return
        self._delete(NS_APPS, app)
        for version in [v for (a, v) in self.versions if a == app]:
            self.forget_version(app, version)

    def flush(self) -> Persist | None:
        """The batch's writes as one Persist (None if it wrote nothing); forgets them."""
        if not self._puts and not self._deletes:
            return None
        persist = Persist(tuple((ns, key, value) for (ns, key), value in self._puts.items()),
                          tuple(sorted(self._deletes)))
        self._puts, self._deletes = {}, set()
        return persist
