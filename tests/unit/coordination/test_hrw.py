import math

from hypothesis import given, settings
from hypothesis import strategies as st

from ntplatform.coordination.hrw import assign, moved, weight

names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=3, max_size=10)
symbol_sets = st.lists(names, min_size=1, max_size=40, unique=True)
node_sets = st.lists(names.map(lambda n: f"node-{n}"), min_size=1, max_size=8, unique=True)


def _loads(assignment: dict[str, str], nodes: list[str]) -> list[int]:
    return [sum(1 for owner in assignment.values() if owner == node) for node in nodes]


def test_weight_is_deterministic_and_in_unit_interval():
    assert weight("producer-node-001", "BTCUSDT") == weight("producer-node-001", "BTCUSDT")
    assert 0.0 <= weight("producer-node-001", "BTCUSDT") < 1.0
    assert weight("producer-node-001", "BTCUSDT") != weight("producer-node-002", "BTCUSDT")


def test_assign_without_nodes_is_empty():
    assert assign(["BTCUSDT"], []) == {}


def test_assign_single_node_owns_everything():
    assert assign(["BTCUSDT", "ETHUSDT"], ["a"]) == {"BTCUSDT": "a", "ETHUSDT": "a"}


def test_assign_hand_worked_two_symbols_two_nodes_follow_highest_weight():
    symbols, nodes = ["BTCUSDT", "ETHUSDT"], ["n1", "n2"]
    pairs = sorted(((weight(n, s), s, n) for s in symbols for n in nodes), reverse=True)
    _, top_symbol, top_node = pairs[0]
    result = assign(symbols, nodes)
    # The strongest pair wins; the other symbol takes the other node (one each).
    assert result[top_symbol] == top_node
    other_symbol = next(s for s in symbols if s != top_symbol)
    assert result[other_symbol] != top_node


@given(symbol_sets, node_sets, st.randoms(use_true_random=False))
def test_assign_is_deterministic_whatever_the_input_order(symbols, nodes, rng):
    shuffled_symbols, shuffled_nodes = list(symbols), list(nodes)
    rng.shuffle(shuffled_symbols)
    rng.shuffle(shuffled_nodes)
    assert assign(symbols, nodes) == assign(shuffled_symbols, shuffled_nodes)


@given(symbol_sets, node_sets)
def test_assign_covers_every_symbol_within_one_of_even(symbols, nodes):
    result = assign(symbols, nodes)
    assert set(result) == set(symbols)
    assert set(result.values()) <= set(nodes)
    loads = _loads(result, nodes)
    assert max(loads) - min(loads) <= 1


@given(symbol_sets, node_sets, st.floats(min_value=0.0, max_value=0.5))
def test_assign_is_a_fixed_point_so_ownership_never_flaps(symbols, nodes, sticky):
    first = assign(symbols, nodes, sticky=sticky)
    assert assign(symbols, nodes, first, sticky) == first


@settings(max_examples=200)
@given(symbol_sets, node_sets)
def test_adding_a_node_moves_about_its_share(symbols, nodes):
    before = assign(symbols, nodes)
    after = assign(symbols, [*nodes, "node-new"], before, 0.02)
    share = math.ceil(len(symbols) / (len(nodes) + 1))
    changed = moved(before, after)
    to_newcomer = {s for s in changed if after[s] == "node-new"}
    assert len(to_newcomer) >= len(symbols) // (len(nodes) + 1)
    assert changed == to_newcomer, "symbols move only to the newcomer"
    assert len(changed) <= share


@given(symbol_sets, node_sets)
def test_removing_a_node_moves_only_its_symbols(symbols, nodes):
    before = assign(symbols, [*nodes, "node-gone"])
    after = assign(symbols, nodes, {s: o for s, o in before.items() if o != "node-gone"}, 0.02)
    orphans = {s for s, owner in before.items() if owner == "node-gone"}
    changed = moved(before, after)
    assert changed == orphans, "survivors keep every symbol they had"
