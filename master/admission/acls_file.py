"""The ACL file (``tepui master --acls FILE``, re-read on SIGHUP): YAML with line numbers in
every parse error, read into the pure ``acls.Acls`` model. Shell side: the core never opens it.

The file::

    permissive: false            # when no rule matches (default false: deny)
    register_frameworks:         # SUBSCRIBE / UPDATE_FRAMEWORK: which principals in which roles
      - principals: [analytics]
        roles: [analytics, "eng/%"]   # "eng/%": every role below eng
    run_tasks:                   # which principals run tasks as which OS users
      - principals: ANY
        users: ANY               # every user except root
    reserve_resources:           # RESERVE; likewise unreserve_resources, create_volumes,
      - principals: [ops]        # destroy_volumes (objects: roles)
        roles: ANY
    teardown_frameworks:         # TEARDOWN: which principals end frameworks of which principals
      - principals: ANY
        framework_principals: ANY
        allow: true              # default true; false makes a deny rule

A framework without a principal matches only ``principals: ANY``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from tepui.master.admission.acls import ACTIONS, ANY, Acls, Match, Rule


class AclError(ValueError):
    """The ACL file is unusable; the message names the file, the line and the field."""


def load_acls(path: str) -> Acls:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise AclError(f"cannot read the ACL file {path}: {exc.strerror}; check --acls") from None
    return parse_acls(text, path)


def parse_acls(text: str, source: str = "<acls>") -> Acls:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise AclError(f"{source} is not valid YAML: {exc}") from None
    if root is None:
        raise AclError(f"{source} is empty; write at least `permissive: false` and the rules to allow "
                       "(an empty file would deny everything)")
    parser = _Parser(source)
    return parser.document(root)


@dataclass
class _Parser:
    source: str
    seen: set[str] = field(default_factory=set)

    def _at(self, node: Any) -> str:
        return f"{self.source} line {node.start_mark.line + 1}"

    def _fail(self, node: Any, what: str) -> AclError:
        return AclError(f"{self._at(node)}: {what}")

    def document(self, root: Any) -> Acls:
        if not isinstance(root, yaml.MappingNode):
            raise self._fail(root, "the ACL file must be a mapping of `permissive` and actions, "
                                   f"e.g. `run_tasks: [...]`; actions: {', '.join(ACTIONS)}")
        permissive = False
        rules: list[tuple[str, tuple[Rule, ...]]] = []
        for key, value in root.value:
            name = self._scalar(key, "a key")
            if name in self.seen:
                raise self._fail(key, f"{name!r} appears twice; merge the two lists")
            self.seen.add(name)
            if name == "permissive":
                permissive = self._bool(value, "permissive")
            elif name in ACTIONS:
                rules.append((name, self._rules(name, value)))
            else:
                raise self._fail(key, f"unknown key {name!r}; expected `permissive` or one of {', '.join(ACTIONS)}")
        return Acls(permissive, tuple(rules), self.source)

    def _rules(self, action: str, node: Any) -> tuple[Rule, ...]:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise self._fail(node, f"{action} must be a list of rules, each like "
                                   f"`- principals: ANY` / `  {ACTIONS[action]}: [...]`")
        return tuple(self._rule(action, i, item) for i, item in enumerate(node.value))

    def _rule(self, action: str, index: int, node: Any) -> Rule:
        where = f"{action}[{index}]"
        if not isinstance(node, yaml.MappingNode):
            raise self._fail(node, f"{where} must be a mapping with `principals` and `{ACTIONS[action]}`")
        fields: dict[str, Any] = {}
        allowed = ("principals", ACTIONS[action], "allow")
        for key, value in node.value:
            name = self._scalar(key, "a key")
            if name not in allowed:
                raise self._fail(key, f"{where}: unknown field {name!r}; a {action} rule takes "
                                      f"{', '.join(allowed)}")
            fields[name] = value
        for required in allowed[:2]:
            if required not in fields:
                raise self._fail(node, f"{where} needs `{required}` (ANY or a list of names)")
        allow = self._bool(fields["allow"], f"{where}.allow") if "allow" in fields else True
        return Rule(self._match(fields["principals"], f"{where}.principals"),
                    self._match(fields[ACTIONS[action]], f"{where}.{ACTIONS[action]}"), allow, self._at(node))

    def _match(self, node: Any, where: str) -> Match:
        if isinstance(node, yaml.ScalarNode) and node.value == ANY:
            return Match(None)
        if isinstance(node, yaml.SequenceNode):
            names = []
            for item in node.value:
                if not isinstance(item, yaml.ScalarNode) or item.tag.endswith(":null") or not item.value:
                    raise self._fail(item, f"{where}: each entry must be a non-empty name")
                if item.value == ANY:
                    raise self._fail(item, f"{where}: write `ANY` alone, not inside a list")
                names.append(item.value)
            return Match(frozenset(names))
        shown = node.value if isinstance(node, yaml.ScalarNode) else "a mapping"
        raise self._fail(node, f"{where}: expected ANY or a list of names like [a, b], got {shown!r}")

    def _bool(self, node: Any, where: str) -> bool:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":bool"):
            return node.value.lower() in ("true", "yes", "on", "y")
        shown = node.value if isinstance(node, yaml.ScalarNode) else "a collection"
        raise self._fail(node, f"{where}: expected true or false, got {shown!r}")

    def _scalar(self, node: Any, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self._fail(node, f"expected {what}, got a collection")
        return str(node.value)


# --- the file `tepui up` writes ----------------------------------------------------------------

LOCAL_CLUSTER_ACLS = """\
# ACLs of a local `tepui up` cluster, written once (edit freely; `kill -HUP` the master, or
# restart the cluster, to apply). Every local client may do everything except run tasks as
# root: root is granted only by a run_tasks rule that names it, e.g.
#   run_tasks:
#     - principals: ANY
#       users: [root]
# Format: docs/security.md, "Authorization".
permissive: false
register_frameworks:
  - principals: ANY
    roles: ANY
run_tasks:
  - principals: ANY
    users: ANY
reserve_resources:
  - principals: ANY
    roles: ANY
unreserve_resources:
  - principals: ANY
    roles: ANY
create_volumes:
  - principals: ANY
    roles: ANY
destroy_volumes:
  - principals: ANY
    roles: ANY
teardown_frameworks:
  - principals: ANY
    framework_principals: ANY
"""
