package modelherd_test

import rego.v1

rejected := patch(good, [["/registry/candidate/tags/modelherd.rejected", "AUC dropped in canary"]])

test_rejected_version_denies_a_rejected_version if {
	inp := rejected
	some v in decide(inp, {}).deny
	v.policy == "rejected-version"
	v.field == "model.version"
	contains(v.msg, "AUC dropped in canary")
}

test_rejected_version_denies_in_staging_too if {
	"rejected-version" in denied(patch(staging, [["/registry/candidate/tags/modelherd.rejected", "bad"]]), {})
}

test_rejected_version_passes_once_the_tag_is_cleared if {
	not "rejected-version" in denied(good, {})
}

test_rejected_version_can_be_disabled if {
	not "rejected-version" in denied(rejected, {"disable": ["rejected-version"]})
}
