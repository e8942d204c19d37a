"""What a member is owed, from the pure rules in vws/context/model.py (no store, no HTTP)."""

from dataclasses import replace

from vws.context import model
from vws.context.model import Context, Contextualization, Identity, Member, RequiredRole

HEAD = Member(1, ("10.0.0.1",), Contextualization(provides=("head",), requires_identities=True), None)
WORKER = Member(
    2,
    ("10.0.0.2",),
    Contextualization(requires_roles=(RequiredRole("head"),), requires_data=("jobs",)),
    None,
)


def reported(member: Member, key: str | None = "ssh-rsa K") -> Member:
    return replace(member, identities=(Identity("eth0", member.addresses[0], f"host{member.workspace_id}", key),))


def context(*members: Member, locked: bool = True, expect: bool = False, data=(("jobs", "x"),)) -> Context:
    return Context("k", "owner", locked, expect, members, data)


def test_nobody_is_answered_until_every_member_has_reported():
    waiting = context(reported(HEAD), WORKER)
    assert model.answer(waiting, reported(HEAD)) == model.Answer(True, False, False)


def test_an_unlocked_context_or_one_expecting_data_is_not_complete():
    members = (reported(HEAD), reported(WORKER))
    assert not model.complete(context(*members, locked=False))
    assert not model.complete(context(*members, expect=True))
    assert model.complete(context(*members))


def test_a_member_gets_exactly_what_it_requires():
    done = context(reported(HEAD), reported(WORKER))
    worker = model.answer(done, done.members[1])
    assert worker.roles == (("head", "10.0.0.1"),)
    assert worker.identities == (Identity("eth0", "10.0.0.1", "host1", None),)  # no pubkey asked for
    assert worker.data == (("jobs", "x"),)
    head = model.answer(done, done.members[0])
    assert [i.ip for i in head.identities] == ["10.0.0.1", "10.0.0.2"] and head.roles == () and head.data == ()
    assert head.identities[1].pubkey == "ssh-rsa K"  # every identity, keys included


def test_what_can_never_be_given_cancels_the_context():
    orphan = replace(WORKER, spec=Contextualization(requires_roles=(RequiredRole("nfs"),)))
    assert "'nfs', which no member provides" in model.problem(context(reported(HEAD), orphan))
    assert "never injected" in model.problem(context(reported(HEAD), WORKER, data=()))
    assert model.problem(context(reported(HEAD), WORKER, data=(), expect=True)) is None  # it may still come
    failed = replace(HEAD, exited="error", error_message="its workspace is Corrupted")
    answer = model.answer(context(failed, reported(WORKER)), reported(WORKER))
    assert answer.cancelled and answer.reason == "member 1 failed: its workspace is Corrupted"


def test_role_counts_say_how_many_providers_reported():
    (count,) = model.role_counts(context(HEAD, WORKER))
    assert (count.name, count.filled, count.providers) == ("head", 0, 1)
    (count,) = model.role_counts(context(reported(HEAD), WORKER))
    assert count.filled == 1


def test_the_spec_survives_its_json():
    spec = replace(WORKER.spec, provides=("a", "b"), data=(("jobs", "x y"),))
    assert Contextualization.from_json(spec.to_json()) == spec
