"""Tepui's public SDK: everything a framework author imports.

    from tepui.sdk import Scheduler, SchedulerDriver, FrameworkInfo, TaskInfo, CommandInfo, Resources
"""

from tepui.sdk.codec import Codec, ProtocolError
from tepui.sdk.protocol.values import (
    AgentInfo,
    CommandInfo,
    CommandURI,
    DemandShape,
    ContainerInfo,
    DockerInfo,
    ExecutorInfo,
    Filters,
    FrameworkInfo,
    HealthCheck,
    KillPolicy,
    MasterInfo,
    Offer,
    Resource,
    RoleExplanation,
    TaskInfo,
    TaskReason,
    TaskSource,
    TaskState,
    TaskStatus,
)
from tepui.sdk.resources import InsufficientResources, InvalidResources, Resources
from tepui.sdk.runtime import install_reactor
from tepui.sdk.scheduler import LONG_RUNNING_FAILOVER_TIMEOUT, CallError, Scheduler, SchedulerDriver
from tepui.sdk.executor import Executor, ExecutorDriver
from tepui.sdk.store import SQLiteStore, Store, StoreError
from tepui.sdk.config import ClientConfig, ConfigError, load_client_config
from tepui.sdk.keys import ClientKeys, KeyStoreError, load_client_keys

__version__ = "0.1.0"

__all__ = [
    "AgentInfo", "CallError", "Codec", "CommandInfo", "CommandURI", "ContainerInfo", "DemandShape", "RoleExplanation", "DockerInfo", "ExecutorInfo",
    "Filters", "FrameworkInfo", "HealthCheck", "InsufficientResources", "InvalidResources", "KillPolicy",
    "MasterInfo", "Offer", "ProtocolError", "Resource", "Resources", "Scheduler", "SchedulerDriver",
    "TaskInfo", "TaskReason", "TaskSource", "TaskState", "TaskStatus", "install_reactor", "__version__",
    "Executor", "ExecutorDriver", "SQLiteStore", "Store", "StoreError", "LONG_RUNNING_FAILOVER_TIMEOUT",
    "ClientConfig", "ConfigError", "load_client_config", "ClientKeys", "KeyStoreError", "load_client_keys",
]
