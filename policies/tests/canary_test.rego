package modelherd_test

import rego.v1

test_canary_required_denies_direct_rollout_in_production if {
	"canary-required" in denied(patch(good, [["/manifest/rollout/canary", null]]), {})
}

test_canary_required_passes_with_canary_steps if {
	not "canary-required" in denied(good, {})
}

test_canary_required_ignores_unprotected_environments if {
	not "canary-required" in denied(patch(staging, [["/manifest/rollout/canary", null]]), {})
}

test_canary_required_can_be_disabled if {
	not "canary-required" in denied(patch(good, [["/manifest/rollout/canary", null]]), {"disable": ["canary-required"]})
}

test_canary_required_can_be_lowered_to_warn if {
	inp := patch(good, [["/manifest/rollout/canary", null]])
	not "canary-required" in denied(inp, {"severity": {"canary-required": "warn"}})
	"canary-required" in warned(inp, {"severity": {"canary-required": "warn"}})
}

test_canary_required_points_at_rollout_canary if {
	some v in decide(patch(good, [["/manifest/rollout/canary", null]]), {}).deny
	v.field == "rollout.canary"
}
