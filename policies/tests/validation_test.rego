package modelherd_test

import rego.v1

unvalidated := patch(good, [["/registry/candidate/tags", {}]])

test_validation_status_warns_without_the_tag if {
	inp := unvalidated
	"validation-status" in warned(inp, {})
	not "validation-status" in denied(inp, {})
}

test_validation_status_passes_when_passed if {
	not "validation-status" in warned(good, {})
}

test_validation_status_ignores_unprotected_environments if {
	not "validation-status" in warned(patch(staging, [["/registry/candidate/tags", {}]]), {})
}

test_validation_status_ignores_an_unchanged_version if {
	inp := patch(unvalidated, [["/change/version_to", "7"], ["/change/version_from", "7"]])
	not "validation-status" in warned(inp, {})
}

test_validation_status_can_be_made_blocking if {
	"validation-status" in denied(unvalidated, {"severity": {"validation-status": "deny"}})
}

test_validation_status_can_be_switched_off if {
	r := decide(unvalidated, {"severity": {"validation-status": "off"}})
	count(r.warn) == 0
}
