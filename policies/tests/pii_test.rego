package modelherd_test

import rego.v1

cloud := patch(good, [["/cluster/provider", "aws"], ["/cluster/onprem", false]])

test_pii_onprem_denies_pii_on_a_cloud_cluster if {
	inp := cloud
	some v in decide(inp, {}).deny
	v.policy == "pii-onprem"
	v.field == "labels.data-class"
}

test_pii_onprem_passes_on_prem if {
	not "pii-onprem" in denied(good, {})
}

test_pii_onprem_passes_other_data_classes_in_the_cloud if {
	not "pii-onprem" in denied(patch(cloud, [["/manifest/labels", {"data-class": "public"}]]), {})
}

test_pii_onprem_classes_come_from_data if {
	inp := patch(cloud, [["/manifest/labels", {"data-class": "health"}]])
	"pii-onprem" in denied(inp, {"pii_classes": ["pii", "health"]})
}

test_pii_onprem_can_be_disabled if {
	not "pii-onprem" in denied(cloud, {"disable": ["pii-onprem"]})
}
