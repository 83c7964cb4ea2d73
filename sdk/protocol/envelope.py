"""The envelope every message travels in, and the union each endpoint accepts.

Fields (DESIGN §4): protocol version ``v``; message id ``id`` (per sender, increasing); the
master's leader ``epoch`` (receivers drop messages from an older epoch, so a message queued in
a socket across a failover is harmless); the agent's ``incarnation`` (new on every agent
process start); the client's optional ``call_id`` for the call it carries (at most
:data:`MAX_CALL_ID` characters), echoed in the ``ERROR`` the call causes, so that a client
tells which of its calls failed. The sender's identity is deliberately *not* a field: the
master takes it from the transport (the allow-list name of the CURVE key that authenticated
the connection, the message's ZeroMQ ``User-Id``), never from anything the peer writes about
itself.
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar, Union

import msgspec
from tepui.sdk.protocol.agent import AgentToMaster, MasterToAgent
from tepui.sdk.protocol.executor import ExecutorCall, ExecutorEvent
from tepui.sdk.protocol.scheduler import SchedulerCall, SchedulerEvent

PROTOCOL_VERSION = 1
MAX_CALL_ID = 128
CallId = Annotated[str, msgspec.Meta(max_length=MAX_CALL_ID)]

B = TypeVar("B")


class Envelope(msgspec.Struct, Generic[B], frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    v: int
    id: int
    body: B
    epoch: int = 0
    incarnation: str | None = None
    call_id: CallId | None = None


# What each endpoint accepts. A message sent to the wrong endpoint fails to decode with
# "Invalid value 'X' at $.body.type", exactly like an unknown message type.
MasterInbound = Union[SchedulerCall, AgentToMaster]
AgentInbound = MasterToAgent
FrameworkInbound = SchedulerEvent
AgentExecutorInbound = ExecutorCall
ExecutorInbound = ExecutorEvent
