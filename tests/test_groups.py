"""Groups and ensembles end to end over HTTP."""

import pytest

from tests.gt4wire import SoapFault, created_eprs
from tests.resources import (
    create,
    create_request,
    ensemble_done,
    ensemble_report,
    group_call,
    in_ensemble,
    reference,
)
from vws.workspace.caller import SERVICE
from vws.xmlns import ENSEMBLE, TYPES, WORKSPACE, qname


def test_a_group_of_five_is_created_operated_and_destroyed_as_one(gt4, service):
    response = create(gt4, create_request(node_number=5))
    members = created_eprs(response)
    group = reference(response, "GroupEPR")
    assert len(members) == 5 and group is not None
    assert group.address.endswith("/WorkspaceGroupService")
    assert reference(response, "EnsembleEPR") is None
    assert {gt4.state(epr) for epr in members} == {"Running"}
    group_call(gt4, group, "shutdown")
    assert {gt4.state(epr) for epr in members} == {"Propagated"}
    group_call(gt4, group, "start")
    assert {gt4.state(epr) for epr in members} == {"Running"}
    group_call(gt4, group, "Destroy")
    assert service.manager.workspaces(SERVICE) == []
    with pytest.raises(SoapFault) as gone:
        group_call(gt4, group, "start")
    assert gone.value.element == qname(TYPES, "WorkspaceUnknownFault")


def test_a_partial_group_failure_is_reported_and_not_rolled_back(gt4):
    response = create(gt4, create_request(node_number=3))
    first, *others = created_eprs(response)
    gt4.shutdown(first, "Normal")  # Propagated: it cannot be shut down again
    with pytest.raises(SoapFault) as partial:
        group_call(gt4, reference(response, "GroupEPR"), "shutdown")
    assert partial.value.element == qname(TYPES, "WorkspaceShutdownFault")
    assert "1 of 3" in partial.value.description
    cause = partial.value.detail.findtext("{*}FaultCause/{*}Description")
    assert f"workspace {first.key(qname(WORKSPACE, 'WorkspaceKey'))}:" in cause
    assert [gt4.state(epr) for epr in others] == ["Propagated", "Propagated"]


def test_a_group_member_destroyed_alone_leaves_the_rest_to_the_group(gt4, service):
    response = create(gt4, create_request(node_number=2))
    lone, rest = created_eprs(response)
    gt4.destroy(lone)
    group_call(gt4, reference(response, "GroupEPR"), "Destroy")
    assert service.manager.workspaces(SERVICE) == []


def test_ensemble_members_wait_for_done_then_start_together(gt4):
    first = create(gt4, in_ensemble(create_request(), None))
    ensemble = reference(first, "EnsembleEPR")
    assert ensemble is not None and ensemble.address.endswith("/WorkspaceEnsembleService")
    second = create(gt4, in_ensemble(create_request(node_number=2), ensemble))
    members = created_eprs(first) + created_eprs(second)
    assert {gt4.state(epr) for epr in members} == {"Unpropagated"}
    assert ensemble_report(gt4, ensemble, all_at="Running") == []
    ensemble_done(gt4, ensemble)
    assert {gt4.state(epr) for epr in members} == {"Running"}
    report = ensemble_report(gt4, ensemble, all_at="Running")
    assert len(report) == 3
    assert [entry.findtext(f"{{{TYPES}}}currentState/{{{TYPES}}}state") for entry in report] == ["Running"] * 3
    assert ensemble_report(gt4, ensemble, error_only=True) == []
    with pytest.raises(SoapFault):
        create(gt4, in_ensemble(create_request(), ensemble))  # done: no more members


def test_ensemble_done_in_the_last_create(gt4):
    first = create(gt4, in_ensemble(create_request(), None))
    ensemble = reference(first, "EnsembleEPR")
    last = create(gt4, in_ensemble(create_request(), ensemble, done=True))
    assert {gt4.state(epr) for epr in created_eprs(first) + created_eprs(last)} == {"Running"}
    group_call(gt4, ensemble, "Destroy")  # WSRL Destroy, as on a group
    with pytest.raises(SoapFault) as gone:
        ensemble_done(gt4, ensemble)
    assert gone.value.element == qname(TYPES, "WorkspaceUnknownFault")


def test_an_ensemble_that_cannot_be_co_scheduled_reserves_nothing(gt4, service):
    first = create(gt4, in_ensemble(create_request(memory_mb=256), None))
    ensemble = reference(first, "EnsembleEPR")
    with pytest.raises(SoapFault) as refused:
        create(gt4, in_ensemble(create_request(memory_mb=1_000_000), ensemble))
    assert refused.value.element == qname(TYPES, "WorkspaceSchedulingFault")
    assert "co-scheduled" in refused.value.description
    assert service.manager.workspaces(SERVICE) == []
    with pytest.raises(SoapFault) as gone:
        ensemble_report(gt4, ensemble)
    assert gone.value.element == qname(TYPES, "WorkspaceUnknownFault")
    assert created_eprs(gt4.create())  # everything it held is free again


def test_ensemble_faults_are_declared_ones(gt4):
    first = create(gt4, in_ensemble(create_request(), None, done=True))
    with pytest.raises(SoapFault) as again:
        ensemble_done(gt4, reference(first, "EnsembleEPR"))
    assert again.value.element == qname(ENSEMBLE, "WorkspaceEnsembleFault")
