"""The workspace state machine as a data table: no I/O, no clock, no database.

Internal states are finer than what GT4 clients see; ``State.wire`` maps each to the
``currentState`` value the 2008/06 protocol emits (Nimbus collapsed states the same
way: a workspace whose image is being copied reads as Unpropagated, destroying reads as
Cancelled).
"""

from dataclasses import dataclass
from enum import Enum

from vws.errors import IllegalState, Unsupported


class State(Enum):
    """Internal states; the value is what the database stores."""

    UNPROPAGATED = "unpropagated"  # accepted and placed; image not on the node yet, or being copied
    PROPAGATED = "propagated"  # defined on the node, not running
    RUNNING = "running"
    PAUSED = "paused"
    UNPROPAGATING = "unpropagating"  # saving the disk back to the repository
    TRANSPORT_READY = "transport-ready"
    CORRUPTED = "corrupted"  # terminal: only Destroy leaves it
    CANCELLED = "cancelled"  # being destroyed
    DESTROYED = "destroyed"  # gone; kept for accounting, unknown to clients

    @property
    def wire(self) -> str:
        """The ``currentState`` value a GT4 client sees."""
        return _WIRE[self]

    @property
    def gone(self) -> bool:
        return self is State.DESTROYED


_WIRE = {
    State.UNPROPAGATED: "Unpropagated",
    State.PROPAGATED: "Propagated",
    State.RUNNING: "Running",
    State.PAUSED: "Paused",
    State.UNPROPAGATING: "Propagated",  # shut down, its disk still being saved
    State.TRANSPORT_READY: "TransportReady",
    State.CORRUPTED: "Corrupted",
    State.CANCELLED: "Cancelled",
    State.DESTROYED: "Cancelled",
}


class Op(Enum):
    """What a client (or the service itself) asks a workspace to do."""

    PROPAGATE = "propagate"
    START = "start"
    SHUTDOWN = "shutdown"  # shutdownType Normal
    PAUSE = "pause"
    REBOOT = "reboot"
    READY_FOR_TRANSPORT = "readyForTransport"  # shutdown-save: unpropagate
    SERIALIZE = "serialize"
    DESTROY = "destroy"


class Action(Enum):
    """What the hypervisor is told to do to make a transition happen."""

    DEFINE = "define"
    START = "start"
    SHUTDOWN = "shutdown"
    SUSPEND = "suspend"
    RESUME = "resume"
    REBOOT = "reboot"
    UNPROPAGATE = "unpropagate"
    REMOVE = "remove"


@dataclass(frozen=True)
class Transition:
    source: State
    op: Op
    target: State
    actions: tuple[Action, ...]
    # Where the workspace waits while the actions run in the background, for the
    # transitions too slow to finish inside a request (unpropagation copies a whole disk).
    via: State | None = None


_S, _O, _A = State, Op, Action
TRANSITIONS: tuple[Transition, ...] = (
    Transition(_S.UNPROPAGATED, _O.PROPAGATE, _S.PROPAGATED, (_A.DEFINE,)),
    Transition(_S.PROPAGATED, _O.START, _S.RUNNING, (_A.START,)),
    Transition(_S.PAUSED, _O.START, _S.RUNNING, (_A.RESUME,)),
    Transition(_S.RUNNING, _O.SHUTDOWN, _S.PROPAGATED, (_A.SHUTDOWN,)),
    Transition(_S.PAUSED, _O.SHUTDOWN, _S.PROPAGATED, (_A.SHUTDOWN,)),
    Transition(_S.RUNNING, _O.PAUSE, _S.PAUSED, (_A.SUSPEND,)),
    Transition(_S.RUNNING, _O.REBOOT, _S.RUNNING, (_A.REBOOT,)),
    *(
        Transition(state, _O.READY_FOR_TRANSPORT, _S.TRANSPORT_READY, actions, via=_S.UNPROPAGATING)
        for state, actions in (
            (_S.RUNNING, (_A.SHUTDOWN, _A.UNPROPAGATE)),
            (_S.PAUSED, (_A.SHUTDOWN, _A.UNPROPAGATE)),
            (_S.PROPAGATED, (_A.UNPROPAGATE,)),
        )
    ),
    *(Transition(state, _O.DESTROY, _S.DESTROYED, (_A.REMOVE,)) for state in State if not state.gone),
)

_TABLE = {(t.source, t.op): t for t in TRANSITIONS}

# The operations that bring a new workspace to each InitialState a request may name.
INITIAL_OPS = {
    "Unstaged": (),
    "Unpropagated": (),
    "Propagated": (Op.PROPAGATE,),
    "Running": (Op.PROPAGATE, Op.START),
    "Paused": (Op.PROPAGATE, Op.START, Op.PAUSE),
}


def transition(state: State, op: Op) -> Transition:
    """The transition ``op`` makes from ``state``, or a typed refusal."""
    if op is Op.SERIALIZE:
        raise Unsupported("Serialize is not supported; use shutdown with Pause or ReadyForTransport")
    try:
        return _TABLE[(state, op)]
    except KeyError:
        raise IllegalState(
            f"cannot {op.value} a workspace that is {state.wire}"
            + (" (only Destroy is possible now)" if state is State.CORRUPTED else "")
        ) from None


def allowed_ops(state: State) -> list[Op]:
    return [t.op for t in TRANSITIONS if t.source is state]
