package modelherd_test

import rego.v1

deletion := patch(good, [["/change/action", "delete"], ["/manifest", null], ["/change/version_to", null]])

test_protected_approval_required_for_a_new_version if {
	r := decide(good, {})
	some a in r.approvals
	a.count == 1
	a.owners == true
	contains(a.reason, "version 8")
}

test_protected_approval_not_required_in_staging if {
	count(decide(staging, {}).approvals) == 0
}

test_protected_approval_not_required_without_a_version_change if {
	inp := patch(good, [["/change/version_to", "7"], ["/change/changed_fields", ["serving.replicas.max"]]])
	count(decide(inp, {}).approvals) == 0
}

test_protected_approval_count_from_data if {
	some a in decide(good, {"approvals": {"count": 2, "teams": ["@acme/sre"]}}).approvals
	a.count == 2
	a.teams == ["@acme/sre"]
}

test_protected_approval_can_be_disabled if {
	count(decide(good, {"disable": ["protected-approval"]}).approvals) == 0
}

test_protected_delete_warns_and_needs_approval if {
	inp := deletion
	r := decide(inp, {})
	"protected-delete" in {v.policy | some v in r.warn}
	some a in r.approvals
	contains(a.reason, "deleted")
}

test_protected_delete_quiet_in_staging if {
	inp := patch(deletion, [["/environment/protected", false]])
	r := decide(inp, {})
	count(r.warn) == 0
	count(r.approvals) == 0
}

test_protected_delete_can_be_disabled if {
	r := decide(deletion, {"disable": ["protected-delete"]})
	count(r.warn) == 0
	count(r.approvals) == 0
}
