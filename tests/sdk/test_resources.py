"""The resources algebra (DESIGN §5): exact fixed-point scalars, coalesced ranges, sets, roles.

The hypothesis tests check the algebra against a tiny model: a dict from (name, role) to an
integer number of thousandths (scalars) or a frozenset (ports as integers, disks as names).
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tepui.sdk.protocol.values import Range, Reservation, Resource
from tepui.sdk.resources import (
    EMPTY,
    InsufficientResources,
    InvalidResources,
    ResourceKey,
    Resources,
)

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EXAMPLE = "cpus:4;mem:2048;ports:[31000-32000];cpus(eng):2;disks:{a,b}"


# --- parsing -----------------------------------------------------------------------------------


def test_parse_example() -> None:
    r = Resources.parse(EXAMPLE)
    assert str(r) == "cpus:4;cpus(eng):2;disks:{a,b};mem:2048;ports:[31000-32000]"
    assert repr(r) == f"Resources({str(r)!r})"
    assert r.to_json() == {"cpus": 6.0, "disks": "{a,b}", "mem": 2048.0, "ports": "[31000-32000]"}
    assert r.scalar("cpus") == 6.0  # over every role
    assert r.scalar_fixed("cpus") == 6000
    assert r.scalar("mem") == 2048.0
    assert r.scalar("gpus") == 0.0
    assert r.ranges("ports") == [(31000, 32000)]
    assert r.ranges("cpus") == []
    assert r.range_count("ports") == 1001
    assert r.names() == {"cpus", "mem", "ports", "disks"}
    assert r.fixed_totals() == {"cpus": 6000, "mem": 2_048_000}
    assert dict(r) == {
        ResourceKey("cpus"): 4000,
        ResourceKey("cpus", "eng", "STATIC"): 2000,
        ResourceKey("mem"): 2_048_000,
        ResourceKey("ports"): ((31000, 32000),),
        ResourceKey("disks"): frozenset({"a", "b"}),
    }


def test_parse_is_order_and_whitespace_insensitive_and_sums_repeats() -> None:
    a = Resources.parse(EXAMPLE)
    b = Resources.parse(" disks : {b, a} ; cpus(eng):2;ports:[31000-32000] ;mem:2048;;cpus:1;cpus:3 ")
    assert a == b
    assert hash(a) == hash(b)


def test_parse_ranges_coalesce_and_sort() -> None:
    r = Resources.parse("ports:[200-300, 1-10, 11-20, 250-400, 500]")
    assert r.ranges("ports") == [(1, 20), (200, 400), (500, 500)]
    assert str(r) == "ports:[1-20, 200-400, 500-500]"
    assert r.to_json() == {"ports": "[1-20, 200-400, 500-500]"}


def test_parse_scalars_round_to_thousandths() -> None:
    assert Resources.parse("cpus:0.1234") == Resources.parse("cpus:0.123")
    assert Resources.parse("cpus:0.0004") == EMPTY
    assert str(Resources.parse("mem:0.5;cpus:1.250")) == "cpus:1.25;mem:0.5"


def test_parse_default_role() -> None:
    r = Resources.parse("cpus:2;mem(ops):64", default_role="eng")
    assert r == Resources.of(role="eng", cpus=2) + Resources.of(role="ops", mem=64)


def test_str_parses_back() -> None:
    r = Resources.parse(EXAMPLE)
    assert Resources.parse(str(r)) == r


def test_role_keys_are_not_interchangeable() -> None:
    reserved = Resources.parse("cpus(eng):2")
    unreserved = Resources.parse("cpus:2")
    assert reserved != unreserved
    assert reserved.scalar("cpus") == unreserved.scalar("cpus") == 2.0
    assert not reserved.contains(unreserved)
    assert not unreserved.contains(reserved)
    assert not Resources.parse("cpus(ops):2").contains(reserved)
    with pytest.raises(InsufficientResources):
        reserved - Resources.of(cpus=1)
    with pytest.raises(InsufficientResources):
        unreserved - Resources.of(role="eng", cpus=1)
    both = reserved + unreserved
    assert both.scalar("cpus") == 4.0
    assert both - Resources.of(role="eng", cpus=2) == unreserved
    assert Resources.of(role="eng", cpus=2) == reserved
    (key,) = [k for k, _ in reserved]
    assert key.reserved and key.role == "eng" and key.reservation == "STATIC"
    (key,) = [k for k, _ in unreserved]
    assert not key.reserved and key.reservation is None


def test_allocatable_reserved_unreserved() -> None:
    r = Resources.parse(EXAMPLE + ";mem(ops):512")
    unreserved = Resources.parse("cpus:4;mem:2048;ports:[31000-32000];disks:{a,b}")
    assert r.unreserved() == unreserved
    assert r.reserved() == Resources.parse("cpus(eng):2;mem(ops):512")
    assert r.reserved("eng") == Resources.parse("cpus(eng):2")
    assert r.reserved("ops") == Resources.parse("mem(ops):512")
    assert r.reserved("nobody") == EMPTY
    assert r.allocatable_to("eng") == unreserved + Resources.parse("cpus(eng):2")
    assert r.allocatable_to("ops") == unreserved + Resources.parse("mem(ops):512")
    assert r.allocatable_to("other") == unreserved
    assert r.unreserved() + r.reserved() == r
    assert r.filter(lambda k: k.name == "mem") == Resources.parse("mem:2048;mem(ops):512")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param("cpus", ["'cpus'"], id="no-value"),
        pytest.param(":4", ["':4'"], id="no-name"),
        pytest.param("4cpus:1", ["'4cpus:1'"], id="name-starts-with-digit"),
        pytest.param("cpus(eng:1", ["'cpus(eng:1'"], id="unclosed-role"),
        pytest.param("cpus:abc", ["'abc'", "cpus"], id="not-a-number"),
        pytest.param("cpus:1;mem:lots", ["'lots'", "mem"], id="second-item-bad"),
        pytest.param("cpus:-1", ["cpus", "-1"], id="negative-scalar"),
        pytest.param("mem:-0.5", ["mem", "-0.5"], id="negative-fraction"),
        pytest.param("cpus:-inf", ["cpus", "-inf"], id="negative-infinity"),
        pytest.param("cpus:nan", ["cpus", "nan"], id="nan"),
        pytest.param("cpus:NaN", ["cpus", "NaN"], id="nan-mixed-case"),
        pytest.param("ports:[1-5", ["'ports:[1-5'"], id="unclosed-range"),
        pytest.param("ports:[a-5]", ["'a-5'", "'ports:[a-5]'"], id="range-not-a-number"),
        pytest.param("ports:[1-2-3]", ["'1-2-3'", "'ports:[1-2-3]'"], id="range-three-parts"),
        pytest.param("ports:[-5]", ["'-5'", "'ports:[-5]'"], id="range-missing-begin"),
        pytest.param("ports:[10-5]", ["10-5"], id="range-begin-after-end"),
        pytest.param("disks:{a,b", ["'disks:{a,b'"], id="unclosed-set"),
        pytest.param("cpus:4;cpus:[1-2]", ["'cpus'", "two different types"], id="scalar-and-range-same-key"),
    ],
)
def test_parse_errors_name_the_input(text: str, names: list[str]) -> None:
    with pytest.raises(InvalidResources) as info:
        Resources.parse(text)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize("text", ["cpus:inf", "mem:Infinity", "disk:1e400"])
def test_parse_refuses_infinity(text: str) -> None:
    with pytest.raises(InvalidResources, match=text.split(":")[0]):
        Resources.parse(text)


def test_of_refuses_negative() -> None:
    with pytest.raises(InvalidResources, match="cpus"):
        Resources.of(cpus=-0.5)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_of_refuses_nan_and_infinity(value: float) -> None:
    with pytest.raises(InvalidResources, match="cpus"):
        Resources.of(cpus=value)


# --- wire --------------------------------------------------------------------------------------


def test_wire_round_trip_of_example() -> None:
    r = Resources.parse(EXAMPLE)
    wire = r.to_wire()
    assert wire == [
        Resource(name="cpus", scalar=4.0),
        Resource(name="cpus", scalar=2.0, role="eng", reservation=Reservation(type="STATIC")),
        Resource(name="disks", type="SET", set=["a", "b"]),
        Resource(name="mem", scalar=2048.0),
        Resource(name="ports", type="RANGES", ranges=[Range(begin=31000, end=32000)]),
    ]
    assert Resources.from_wire(wire) == r


def test_from_wire_keeps_dynamic_reservations_apart() -> None:
    static = Resource(name="cpus", scalar=1.0, role="eng")
    dynamic = Resource(
        name="cpus", scalar=2.0, role="eng", reservation=Reservation(type="DYNAMIC", principal="ops")
    )
    r = Resources.from_wire([static, dynamic])
    assert r.scalar("cpus") == 3.0
    assert dict(r) == {
        ResourceKey("cpus", "eng", "STATIC"): 1000,
        ResourceKey("cpus", "eng", "DYNAMIC", "ops"): 2000,
    }
    assert Resources.from_wire(r.to_wire()) == r
    assert not r.contains(Resources.of(role="eng", cpus=2))  # only 1 cpu is statically reserved


def test_from_wire_sums_duplicates_and_coalesces_ranges() -> None:
    r = Resources.from_wire(
        [
            Resource(name="cpus", scalar=0.1),
            Resource(name="cpus", scalar=0.2),
            Resource(name="ports", type="RANGES", ranges=[Range(begin=5, end=9), Range(begin=1, end=4)]),
            Resource(name="ports", type="RANGES", ranges=[Range(begin=10, end=10)]),
            Resource(name="disks", type="SET", set=["a"]),
            Resource(name="disks", type="SET", set=["a", "b"]),
        ]
    )
    assert r == Resources.parse("cpus:0.3;ports:[1-10];disks:{a,b}")


@pytest.mark.parametrize(
    ("resource", "names"),
    [
        pytest.param(Resource(name="cpus"), ["'cpus'", "None"], id="scalar-without-value"),
        pytest.param(Resource(name="cpus", scalar=-1.0), ["'cpus'", "-1.0"], id="negative-scalar"),
        pytest.param(Resource(name="cpus", scalar=math.nan), ["'cpus'", "nan"], id="nan-scalar"),
        pytest.param(Resource(name="gpus", type="TEXT", scalar=1.0), ["'gpus'", "'TEXT'"], id="unknown-type"),
        pytest.param(Resource(name="gpus", type="scalar", scalar=1.0), ["'scalar'"], id="lowercase-type"),
        pytest.param(
            Resource(name="ports", type="RANGES", ranges=[Range(begin=10, end=5)]),
            ["10-5"],
            id="reversed-range",
        ),
    ],
)
def test_from_wire_rejects(resource: Resource, names: list[str]) -> None:
    with pytest.raises(InvalidResources) as info:
        Resources.from_wire([resource])
    for name in names:
        assert name in str(info.value)


def test_from_wire_rejects_infinite_scalar() -> None:
    with pytest.raises(InvalidResources, match="cpus"):
        Resources.from_wire([Resource(name="cpus", scalar=math.inf)])


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(
            [
                Resource(
                    name="cpus",
                    scalar=1.0,
                    role="eng",
                    reservation=Reservation(type="DYNAMIC", principal="alice"),
                ),
                Resource(name="cpus", scalar=2.0, role="eng", reservation=Reservation(type="DYNAMIC")),
            ],
            id="principal-and-no-principal",
        ),
        pytest.param(
            [
                Resource(name="cpus", scalar=1.0),
                Resource(name="cpus", scalar=2.0, reservation=Reservation()),
            ],
            id="unreserved-and-reservation-with-star-role",
        ),
    ],
)
def test_wire_round_trip_with_mixed_reservations(wire: list[Resource]) -> None:
    r = Resources.from_wire(wire)
    assert Resources.from_wire(r.to_wire()) == r
    assert "cpus" in str(r)
    with pytest.raises(InsufficientResources):
        EMPTY - r  # the error message formats str(r)


# --- fixed point -------------------------------------------------------------------------------


def test_ten_thousand_tenths_of_a_cpu_do_not_drift() -> None:
    start = Resources.parse("cpus:8;mem:1024")
    tenth = Resources.of(cpus=0.1)
    r = start
    for _ in range(10_000):
        r = r + tenth
    assert r.scalar_fixed("cpus") == 8000 + 10_000 * 100
    assert r.scalar("cpus") == 1008.0
    for _ in range(10_000):
        r = r - tenth
    assert r == start
    # what floats would have done
    total = 8.0
    for _ in range(10_000):
        total += 0.1
    assert total != 1008.0


def test_point_one_plus_point_two_is_point_three() -> None:
    assert 0.1 + 0.2 != 0.3
    assert Resources.of(cpus=0.1) + Resources.of(cpus=0.2) == Resources.of(cpus=0.3)
    assert (Resources.of(cpus=0.1) + Resources.of(cpus=0.2)).scalar("cpus") == 0.3
    assert Resources.of(cpus=0.3) - Resources.of(cpus=0.1) == Resources.of(cpus=0.2)
    assert Resources.of(cpus=0.3).contains(Resources.of(cpus=0.1) + Resources.of(cpus=0.2))
    assert Resources.of(cpus=0.3) - Resources.of(cpus=0.1) - Resources.of(cpus=0.2) == EMPTY


# --- strategies --------------------------------------------------------------------------------

ROLES = ["*", "eng", "ops"]
SCALAR_NAMES = ["cpus", "mem", "disk", "gpus"]
PORTS = range(31000, 31048)
DISKS = "abcdefgh"

#: thousandths of a scalar with 0-3 decimals (e.g. 4, 0.5, 1.25, 0.125)
#: (one draw: the low two bits pick the number of decimals)
thousandths = st.integers(0, 400_003).map(lambda n: (n // 4) * 10 ** (3 - n % 4))

Spec = dict[tuple[str, str], Any]


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    spec: Spec = {}
    for key in draw(
        st.lists(st.sampled_from([(n, r) for n in SCALAR_NAMES for r in ROLES]), max_size=6, unique=True)
    ):
        spec[key] = draw(thousandths)
    for role in draw(st.lists(st.sampled_from(ROLES), max_size=2, unique=True)):
        spans = draw(st.lists(st.tuples(st.sampled_from(PORTS), st.integers(0, 12)), max_size=3))
        spec[("ports", role)] = frozenset(p for b, n in spans for p in range(b, min(b + n, PORTS[-1]) + 1))
    for role in draw(st.lists(st.sampled_from(ROLES), max_size=2, unique=True)):
        spec[("disks", role)] = draw(st.frozensets(st.sampled_from(DISKS), max_size=5))
    return spec


def build(spec: Spec, shuffle: random.Random | None = None) -> Resources:
    """Builds through the wire format, one Resource per amount (ports one per port)."""
    wire = []
    for (name, role), amount in spec.items():
        if name == "ports":
            wire.append(
                Resource(
                    name=name,
                    type="RANGES",
                    ranges=[Range(begin=p, end=p) for p in sorted(amount)],
                    role=role,
                )
            )
        elif name == "disks":
            wire.append(Resource(name=name, type="SET", set=sorted(amount), role=role))
        else:
            wire.append(Resource(name=name, scalar=amount / 1000, role=role))
    if shuffle is not None:
        shuffle.shuffle(wire)
    return Resources.from_wire(wire)


def model_add(a: Spec, b: Spec) -> Spec:
    out = dict(a)
    for key, amount in b.items():
        if key not in out:
            out[key] = amount
        elif isinstance(amount, int):
            out[key] = out[key] + amount
        else:
            out[key] = out[key] | amount
    return out


def model_contains(a: Spec, b: Spec) -> bool:
    for key, amount in b.items():
        if not amount:
            continue
        have = a.get(key)
        if have is None:
            return False
        if isinstance(amount, int):
            if have < amount:
                return False
        elif not amount <= have:
            return False
    return True


def disjoint_from(b: Spec, a: Spec) -> Spec:
    """``b`` with every port and disk that ``a`` holds under the same key removed."""
    return {k: (v if isinstance(v, int) else v - a.get(k, frozenset())) for k, v in b.items()}


resources = specs().map(build)


# --- properties --------------------------------------------------------------------------------


@PROPS
@given(specs(), st.randoms(use_true_random=False))
def test_build_matches_model_and_order_does_not_matter(spec: Spec, rnd: random.Random) -> None:
    r = build(spec)
    assert r == build(spec, shuffle=rnd)
    assert hash(r) == hash(build(spec, shuffle=rnd))
    assert bool(r) == any(bool(v) for v in spec.values())
    for name in SCALAR_NAMES:
        assert r.scalar_fixed(name) == sum(v for (n, _), v in spec.items() if n == name)
    ports = frozenset().union(*(v for (n, _), v in spec.items() if n == "ports"))
    assert {p for b, e in r.ranges("ports") for p in range(b, e + 1)} == ports
    assert r.range_count("ports") == len(ports)


@PROPS
@given(resources)
def test_wire_and_text_round_trips(r: Resources) -> None:
    assert Resources.from_wire(r.to_wire()) == r
    if r:
        assert Resources.parse(str(r)) == r


@PROPS
@given(specs(), specs())
def test_addition_matches_model_commutes_and_contains_both_parts(a_spec: Spec, b_spec: Spec) -> None:
    a, b = build(a_spec), build(b_spec)
    total = a + b
    assert total == build(model_add(a_spec, b_spec))
    assert total == b + a
    assert hash(total) == hash(b + a)
    assert total.contains(a)
    assert total.contains(b)
    assert a + EMPTY == a and EMPTY + a == a


@settings(PROPS, max_examples=100)
@given(resources, resources, resources)
def test_addition_is_associative(a: Resources, b: Resources, c: Resources) -> None:
    assert (a + b) + c == a + (b + c)


@PROPS
@given(specs(), specs())
def test_add_then_subtract_gives_back_the_start(a_spec: Spec, b_spec: Spec) -> None:
    # Ranges and sets add by union (a port is either there or not), so cancellation holds
    # for the ports/disks that b does not already share with a; scalars always cancel.
    a, b = build(a_spec), build(disjoint_from(b_spec, a_spec))
    assert (a + b) - b == a
    assert (a + b) - a == b


def test_overlapping_ranges_and_sets_add_by_union() -> None:
    a = Resources.parse("ports:[1-5];disks:{x,y}")
    b = Resources.parse("ports:[3-7];disks:{y,z}")
    assert a + b == Resources.parse("ports:[1-7];disks:{x,y,z}")
    assert a + a == a
    assert (a + b) - b == Resources.parse("ports:[1-2];disks:{x}")


@PROPS
@given(resources)
def test_contains_is_reflexive_and_self_subtraction_is_empty(a: Resources) -> None:
    assert a.contains(a)
    assert a.contains(EMPTY)
    assert a - a == EMPTY
    assert not (a - a)
    assert a - EMPTY == a
    assert a.missing_from(a) == EMPTY


@PROPS
@given(specs(), specs())
def test_contains_missing_from_and_subtraction_agree(a_spec: Spec, b_spec: Spec) -> None:
    a, b = build(a_spec), build(b_spec)
    contained = a.contains(b)
    assert contained == model_contains(a_spec, b_spec)
    # antisymmetry
    if contained and b.contains(a):
        assert a == b
        assert hash(a) == hash(b)
    # missing_from is empty iff contained; what is missing is part of b and completes a
    missing = b.missing_from(a)
    assert (not missing) == contained
    assert b.contains(missing)
    assert (a + missing).contains(b)
    # subtraction refuses exactly when not contained, and says what is missing
    if contained:
        assert a.contains(a - b)
    else:
        with pytest.raises(InsufficientResources) as info:
            a - b
        assert str(missing) in str(info.value)


@PROPS
@given(specs(), st.data())
def test_subtract_a_contained_part_then_add_it_back(a_spec: Spec, data: st.DataObject) -> None:
    # b is a random part of a: some of each scalar, a subset of each port and disk set
    b_spec: Spec = {}
    for key, amount in a_spec.items():
        if isinstance(amount, int):
            b_spec[key] = data.draw(st.integers(0, amount))
        else:
            b_spec[key] = data.draw(
                st.frozensets(st.sampled_from(sorted(amount)), max_size=len(amount))
                if amount
                else st.just(frozenset())
            )
    a, b = build(a_spec), build(b_spec)
    assert a.contains(b)
    rest = a - b
    assert rest + b == a
    assert a.contains(rest)
    assert rest - rest == EMPTY


@PROPS
@given(st.integers(0, 5000), st.integers(0, 5000), st.integers(0, 1000), st.integers(0, 1000))
def test_subtracting_a_sub_range_leaves_a_hole_and_adding_it_back_coalesces(
    begin: int, length: int, offset: int, hole_length: int
) -> None:
    end = begin + length
    hole_begin = begin + offset % (length + 1)
    hole_end = min(end, hole_begin + hole_length)
    whole = Resources.parse(f"ports:[{begin}-{end}]")
    hole = Resources.parse(f"ports:[{hole_begin}-{hole_end}]")
    assert whole.contains(hole)
    rest = whole - hole
    expected = [(b, e) for b, e in [(begin, hole_begin - 1), (hole_end + 1, end)] if b <= e]
    assert rest.ranges("ports") == expected
    assert rest.range_count("ports") == whole.range_count("ports") - hole.range_count("ports")
    assert not rest.contains(hole)
    assert (rest + hole).ranges("ports") == [(begin, end)]
    assert rest + hole == whole


def test_ranges_hole_example() -> None:
    whole = Resources.parse("ports:[31000-32000]")
    rest = whole - Resources.parse("ports:[31100-31199]")
    assert rest.ranges("ports") == [(31000, 31099), (31200, 32000)]
    assert str(rest) == "ports:[31000-31099, 31200-32000]"
    assert not rest.contains(Resources.parse("ports:[31099-31100]"))
    assert rest.contains(Resources.parse("ports:[31000-31099, 31200]"))
    assert rest + Resources.parse("ports:[31100-31199]") == whole
    # adjacent pieces coalesce in any order
    assert Resources.parse("ports:[31100-31199]") + rest == whole


@PROPS
@given(st.lists(thousandths, max_size=60), st.randoms(use_true_random=False))
def test_add_then_subtract_in_any_order_never_drifts(amounts: list[int], rnd: random.Random) -> None:
    start = Resources.of(cpus=3.3, mem=0.7)
    r = start
    for amount in amounts:
        r = r + Resources.of(cpus=amount / 1000)
    assert r.scalar_fixed("cpus") == 3300 + sum(amounts)
    rnd.shuffle(amounts)
    for amount in amounts:
        r = r - Resources.of(cpus=amount / 1000)
    assert r == start


@PROPS
@given(st.lists(st.tuples(st.booleans(), thousandths), max_size=80))
def test_random_add_subtract_walk_matches_exact_integer_model(steps: list[tuple[bool, int]]) -> None:
    model = 0
    r = EMPTY
    for add, amount in steps:
        delta = Resources.of(cpus=amount / 1000)
        if add:
            r, model = r + delta, model + amount
        elif amount <= model:
            r, model = r - delta, model - amount
        else:
            with pytest.raises(InsufficientResources):
                r - delta
        assert r.scalar_fixed("cpus") == model
        assert r == (Resources.of(cpus=model / 1000) if model else EMPTY)


# --- empty -------------------------------------------------------------------------------------


def test_empty_resources() -> None:
    assert not Resources()
    assert Resources() == EMPTY
    assert not Resources.parse("")
    assert not Resources.parse(" ; ;")
    assert Resources.of(cpus=0) == EMPTY
    assert not Resources.of(cpus=0, mem=0)
    assert not Resources.parse("cpus:0;ports:[];disks:{}")
    assert Resources.from_wire([]) == EMPTY
    assert Resources.from_wire([Resource(name="cpus", scalar=0.0)]) == EMPTY
    assert EMPTY.to_wire() == []
    assert EMPTY.to_json() == {}
    assert str(EMPTY) == ""
    assert EMPTY.scalar("cpus") == 0.0
    assert EMPTY.ranges("ports") == []
    assert Resources.of(cpus=1) - Resources.of(cpus=1) == EMPTY
    assert Resources.of(cpus=0.5) + Resources.of(cpus=0) == Resources.of(cpus=0.5)
    assert hash(Resources()) == hash(Resources.of(cpus=0))


def test_equal_values_hash_equal() -> None:
    a = Resources.parse("cpus:1;mem:128;ports:[1-3];disks:{x}")
    b = Resources.parse("ports:[1-1,2-3];mem:64;mem:64;disks:{x};cpus:0.5;cpus:0.5")
    c = Resources.of(cpus=1, mem=128) + Resources.parse("ports:[1-3];disks:{x}")
    assert a == b == c
    assert len({a, b, c}) == 1
    assert {a: "x"}[c] == "x"
    assert a != Resources.parse("cpus:1;mem:128;ports:[1-3]")
    assert a != "cpus:1;mem:128;ports:[1-3];disks:{x}"


def test_values_are_immutable() -> None:
    a = Resources.of(cpus=1)
    b = a + Resources.of(cpus=1)
    assert a == Resources.of(cpus=1) and b == Resources.of(cpus=2)
    with pytest.raises(AttributeError):
        a.extra = 1  # type: ignore[attr-defined]
