"""The port plan of `tepui up --ha` (cli/ha_ports.py): exact ports, and no collisions."""

from __future__ import annotations

import pytest

from tepui.cli import ha_ports
from tepui.cli.ha_ports import InstancePorts, MasterPorts, collisions, ensemble_base, framework_port, plan


def test_the_default_plan_exactly() -> None:
    p = plan(5050, 5080)
    assert p.masters == (MasterPorts("master-1", 5050, 5080), MasterPorts("master-2", 5051, 5081),
                         MasterPorts("master-3", 5052, 5082))
    assert p.instances == (InstancePorts("services", "services-1", 5090), InstancePorts("batch", "batch-1", 5091),
                           InstancePorts("cron", "cron-1", 5092), InstancePorts("services", "services-2", 5093),
                           InstancePorts("batch", "batch-2", 5094), InstancePorts("cron", "cron-2", 5095))
    assert p.ensemble_base == 21050
    assert p.ensemble_ports() == (21050, 21051, 21052, 21060, 21061, 21062, 21070, 21071, 21072)
    assert p.masters[1].address == "127.0.0.1:5051" and p.masters[1].http == "http://127.0.0.1:5081"
    assert [i.name for i in p.instances_of("cron")] == ["cron-1", "cron-2"]


def test_the_first_instances_keep_the_ports_of_a_single_tepui_up() -> None:
    """services http+10, batch +11, cron +12, as cli/up.py's Cluster gives them."""
    assert [framework_port(5080, name, 1) for name in ("services", "batch", "cron")] == [5090, 5091, 5092]
    assert [framework_port(5080, name, 2) for name in ("services", "batch", "cron")] == [5093, 5094, 5095]


@pytest.mark.parametrize(("port", "http_port"), [(5050, 5080), (6050, 6080), (5150, 5180), (40000, 40100),
                                                 (1024, 2000)])
def test_plans_of_usual_ports_collide_nowhere(port: int, http_port: int) -> None:
    p = plan(port, http_port)
    assert collisions(p, with_ensemble=True) == []
    numbers = [n for n, _what in p.all_ports(with_ensemble=True)]
    assert len(numbers) == len(set(numbers)) == 3 * 2 + 6 + 9


def test_the_ensemble_moves_below_the_port_when_above_would_not_fit() -> None:
    assert ensemble_base(49513) == 65513  # its last port, election of server 3, is 65535
    assert ensemble_base(49514) == 33514
    assert collisions(plan(60000, 60100), with_ensemble=True) == []


def test_two_clusters_on_ports_apart_by_more_than_the_ensembles_span_get_disjoint_ensembles() -> None:
    a, b = plan(5050, 5080), plan(5050 + ha_ports.ENSEMBLE_SPAN, 6080)
    assert not set(a.ensemble_ports()) & set(b.ensemble_ports())


def test_collisions_are_named() -> None:
    # HTTP ports right after the ZeroMQ ones: master-2's ZeroMQ port is master-1's HTTP port.
    assert collisions(plan(5050, 5051), with_ensemble=False)[:2] == [
        "port 5051 would be both master-1's HTTP port and master-2's ZeroMQ port",
        "port 5052 would be both master-2's HTTP port and master-3's ZeroMQ port"]
    # The ensemble on the agents' task ports (port + 16000 in 31000-32000).
    assert collisions(plan(15000, 15100), with_ensemble=True) == [
        f"port {n} (a port of the local ZooKeeper ensemble) is in the agents' task port range 31000-32000"
        for n in (31000, 31001, 31002, 31010, 31011, 31012, 31020, 31021, 31022)]
    assert collisions(plan(15000, 15100), with_ensemble=False) == []  # --zk: no local ensemble
    assert collisions(plan(65534, 5080), with_ensemble=False)[0] == \
        "port 65536 (master-3's ZeroMQ port) is outside 1024-65535"
