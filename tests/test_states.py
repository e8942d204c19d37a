"""The GT4 state machine, driven as a table (no service, no hypervisor)."""

import pytest

from vws.errors import IllegalState, Unsupported
from vws.workspace.states import INITIAL_OPS, TRANSITIONS, Op, State, allowed_ops, transition

EMITTED = {"Unpropagated", "Propagated", "Running", "Paused", "TransportReady", "Corrupted", "Cancelled"}


def test_every_internal_state_shows_a_gt4_value():
    assert {state.wire for state in State} == EMITTED


@pytest.mark.parametrize(
    "state, op, target",
    [
        (State.PROPAGATED, Op.START, State.RUNNING),
        (State.RUNNING, Op.PAUSE, State.PAUSED),
        (State.PAUSED, Op.START, State.RUNNING),
        (State.RUNNING, Op.SHUTDOWN, State.PROPAGATED),
        (State.RUNNING, Op.REBOOT, State.RUNNING),
        (State.RUNNING, Op.READY_FOR_TRANSPORT, State.TRANSPORT_READY),
        (State.CORRUPTED, Op.DESTROY, State.DESTROYED),
    ],
)
def test_allowed_transitions(state, op, target):
    assert transition(state, op).target is target


@pytest.mark.parametrize(
    "state, op",
    [
        (State.CORRUPTED, Op.START),
        (State.TRANSPORT_READY, Op.START),
        (State.PROPAGATED, Op.PAUSE),
        (State.PAUSED, Op.PAUSE),
        (State.UNPROPAGATED, Op.SHUTDOWN),
        (State.DESTROYED, Op.DESTROY),
    ],
)
def test_refused_transitions_name_the_state(state, op):
    with pytest.raises(IllegalState, match=state.wire):
        transition(state, op)


def test_corrupted_is_terminal_but_destroyable():
    assert allowed_ops(State.CORRUPTED) == [Op.DESTROY]


def test_serialize_is_refused_as_unsupported_everywhere():
    for state in State:
        with pytest.raises(Unsupported):
            transition(state, Op.SERIALIZE)


def test_initial_states_are_reachable_by_their_operations():
    for initial, ops in INITIAL_OPS.items():
        state = State.UNPROPAGATED
        for op in ops:
            state = transition(state, op).target
        expected = "Unpropagated" if initial == "Unstaged" else initial
        assert state.wire == expected


def test_every_live_state_can_be_destroyed():
    destroyable = {t.source for t in TRANSITIONS if t.op is Op.DESTROY}
    assert destroyable == {state for state in State if not state.gone}
