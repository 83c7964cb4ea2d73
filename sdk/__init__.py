"""Tepui's public SDK: everything a framework author imports.

    from tepui.sdk import Scheduler, SchedulerDriver, FrameworkInfo, TaskInfo, CommandInfo, Resources
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Where each public name lives. Imported on first use (PEP 562), so that importing the wire
# kernel — ``tepui.sdk.protocol``, ``resources``, ``effects``, ``codec``, which every pure core
# uses — does not load the driver's Twisted and ZeroMQ, the store's sqlite3 or the keys' files
# (issue 16: ``import tepui.offers.allocator`` loaded all of them; tests/test_purity.py).
_HOMES = {
    "tepui.sdk.codec": ("Codec", "ProtocolError"),
    "tepui.sdk.protocol.values": (
        "AgentInfo", "CommandInfo", "CommandURI", "DemandShape", "ContainerInfo", "DockerInfo", "ExecutorInfo",
        "Filters", "FrameworkInfo", "HealthCheck", "KillPolicy", "MasterInfo", "Offer", "Resource",
        "RoleExplanation", "TaskInfo", "TaskReason", "TaskSource", "TaskState", "TaskStatus",
    ),
    "tepui.sdk.resources": ("InsufficientResources", "InvalidResources", "Resources"),
    "tepui.sdk.runtime": ("install_reactor",),
    "tepui.sdk.scheduler": ("LONG_RUNNING_FAILOVER_TIMEOUT", "CallError", "Scheduler", "SchedulerDriver"),
    "tepui.sdk.executor": ("Executor", "ExecutorDriver"),
    "tepui.sdk.store": ("SQLiteStore", "Store", "StoreError"),
    "tepui.sdk.config": ("ClientConfig", "ConfigError", "load_client_config"),
    "tepui.sdk.keys": ("ClientKeys", "KeyStoreError", "load_client_keys"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'tepui.sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_HOME_OF))


if TYPE_CHECKING:  # what a type checker and an IDE see: the same names, imported eagerly
    from tepui.sdk.codec import Codec, ProtocolError
    from tepui.sdk.config import ClientConfig, ConfigError, load_client_config
    from tepui.sdk.executor import Executor, ExecutorDriver
    from tepui.sdk.keys import ClientKeys, KeyStoreError, load_client_keys
    from tepui.sdk.protocol.values import (
        AgentInfo, CommandInfo, CommandURI, ContainerInfo, DemandShape, DockerInfo, ExecutorInfo, Filters,
        FrameworkInfo, HealthCheck, KillPolicy, MasterInfo, Offer, Resource, RoleExplanation, TaskInfo,
        TaskReason, TaskSource, TaskState, TaskStatus,
    )
    from tepui.sdk.resources import InsufficientResources, InvalidResources, Resources
    from tepui.sdk.runtime import install_reactor
    from tepui.sdk.scheduler import LONG_RUNNING_FAILOVER_TIMEOUT, CallError, Scheduler, SchedulerDriver
    from tepui.sdk.store import SQLiteStore, Store, StoreError

__version__ = "0.1.0"

__all__ = [
    "AgentInfo", "CallError", "Codec", "CommandInfo", "CommandURI", "ContainerInfo", "DemandShape", "RoleExplanation", "DockerInfo", "ExecutorInfo",
    "Filters", "FrameworkInfo", "HealthCheck", "InsufficientResources", "InvalidResources", "KillPolicy",
    "MasterInfo", "Offer", "ProtocolError", "Resource", "Resources", "Scheduler", "SchedulerDriver",
    "TaskInfo", "TaskReason", "TaskSource", "TaskState", "TaskStatus", "install_reactor", "__version__",
    "Executor", "ExecutorDriver", "SQLiteStore", "Store", "StoreError", "LONG_RUNNING_FAILOVER_TIMEOUT",
    "ClientConfig", "ConfigError", "load_client_config", "ClientKeys", "KeyStoreError", "load_client_keys",
]
