package modelherd_test

import rego.v1

test_known_cluster_denies_an_unknown_cluster if {
	some v in decide(patch(good, [["/cluster", {"name": "nowhere", "known": false}]]), {}).deny
	v.policy == "known-cluster"
	v.field == "cluster"
	contains(v.msg, "nowhere")
}

test_known_cluster_passes_a_known_cluster if {
	not "known-cluster" in denied(good, {})
}

test_known_cluster_ignores_deletes if {
	inp := patch(good, [["/cluster", {"name": "nowhere", "known": false}], ["/change/action", "delete"], ["/manifest", null]])
	not "known-cluster" in denied(inp, {})
}

test_known_cluster_can_be_disabled if {
	not "known-cluster" in denied(patch(good, [["/cluster", {"name": "x", "known": false}]]), {"disable": ["known-cluster"]})
}
