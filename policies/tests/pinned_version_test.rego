package modelherd_test

import rego.v1

alias_input := patch(good, [["/manifest/model/version", null], ["/manifest/model/alias", "champion"]])

test_pinned_version_denies_an_alias_in_production if {
	inp := alias_input
	some v in decide(inp, {}).deny
	v.policy == "pinned-version"
	v.field == "model.alias"
	contains(v.msg, "@champion")
	contains(v.msg, "version 8")
}

test_pinned_version_passes_a_pinned_version if {
	not "pinned-version" in denied(good, {})
}

test_pinned_version_allows_an_alias_in_staging if {
	inp := patch(alias_input, [["/environment/protected", false]])
	not "pinned-version" in denied(inp, {})
}

test_pinned_version_can_be_disabled if {
	not "pinned-version" in denied(alias_input, {"disable": ["pinned-version"]})
}
