"""Authorization: the ACL model (Mesos's local authorizer, adapted) and its pure evaluation.

Why this shape: Mesos's ``--acls`` lists, per action, rules of *subjects* (principals) and
*objects* (roles, users, framework principals); the first rule that matches both decides, and
``permissive`` decides when none matches. Tepui keeps that and adds one rule Mesos leaves to the
operator: **root is never granted by ``ANY``** — a task runs as root only if a rule names
``root`` itself (DESIGN §7: "tasks never run as root unless a rule says so"), and ``permissive``
never grants it either.

The file these come from, its YAML format and its parser are ``acls_file.py``'s (the master's
shell reads it; the core only holds and evaluates ``Acls``).

A framework without a principal matches only ``principals: ANY``.
"""

from __future__ import annotations

from dataclasses import dataclass

ANY = "ANY"
ROOT = "root"

# action → the name of its object field in the file
ACTIONS: dict[str, str] = {
    "register_frameworks": "roles",
    "run_tasks": "users",
    "reserve_resources": "roles",
    "unreserve_resources": "roles",
    "create_volumes": "roles",
    "destroy_volumes": "roles",
    "teardown_frameworks": "framework_principals",
}
REGISTER, RUN_TASKS, TEARDOWN = "register_frameworks", "run_tasks", "teardown_frameworks"


@dataclass(frozen=True)
class Match:
    """``ANY`` (``names`` is None) or a set of names; a role name ``a/%`` matches every role
    below ``a`` (Mesos hierarchical roles)."""

    names: frozenset[str] | None = None

    def matches(self, value: str | None) -> bool:
        if self.names is None:
            return True
        if value is None:
            return False
        if value in self.names:
            return True
        return any(name.endswith("/%") and value.startswith(name[:-1]) for name in self.names)

    def __str__(self) -> str:
        return ANY if self.names is None else "[" + ", ".join(sorted(self.names)) + "]"


@dataclass(frozen=True)
class Rule:
    principals: Match
    objects: Match
    allow: bool = True
    where: str = ""  # "acls.yaml line 7", for messages


@dataclass(frozen=True)
class Decision:
    allowed: bool
    why: str  # which rule decided, or that none did: goes into the refusal message


@dataclass(frozen=True)
class Acls:
    permissive: bool = False
    rules: tuple[tuple[str, tuple[Rule, ...]], ...] = ()  # (action, rules in order)
    source: str = "built-in default"

    def rules_for(self, action: str) -> tuple[Rule, ...]:
        return next((rules for name, rules in self.rules if name == action), ())

    def decide(self, action: str, principal: str | None, obj: str | None) -> Decision:
        """First matching rule wins (Mesos). For ``run_tasks`` as root, only a rule that names
        ``root`` may allow, and ``permissive`` does not apply."""
        if action not in ACTIONS:
            raise ValueError(f"unknown ACL action {action!r}")
        root = action == RUN_TASKS and obj == ROOT
        for rule in self.rules_for(action):
            if not rule.principals.matches(principal) or not rule.objects.matches(obj):
                continue
            if root and rule.allow and rule.objects.names is None:
                continue  # `users: ANY` never grants root
            verdict = "allows" if rule.allow else "denies"
            return Decision(rule.allow, f"the {action} rule at {rule.where} {verdict} it")
        if root:
            return Decision(False, f"root is never allowed unless a {action} rule in {self.source} names "
                                   "`users: [root]` for this principal")
        if self.permissive:
            return Decision(True, f"no {action} rule matches and {self.source} is permissive")
        return Decision(False, f"no {action} rule in {self.source} matches, and what no rule allows is denied")


PERMISSIVE = Acls(permissive=True, source="the built-in default ACLs (no --acls given)")
