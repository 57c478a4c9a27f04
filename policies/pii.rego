# pii-onprem: models labelled as personal data serve only on on-prem clusters.
package modelherd

import rego.v1

# metadata.labels["data-class"] == "pii" (the values come from data `pii_classes`, default ["pii"])
# needs a cluster whose provider is onprem in the server settings.
violation contains {
	"policy": "pii-onprem",
	"level": "deny",
	"field": "labels.data-class",
	"msg": sprintf("%s is labelled data-class: %s and may serve only on an on-prem cluster; %s is %s", [
		input.manifest.name, input.manifest.labels["data-class"], input.cluster.name, input.cluster.provider,
	]),
} if {
	deploying
	input.manifest.labels["data-class"] in setting("pii_classes", ["pii"])
	input.cluster.known == true
	input.cluster.onprem != true
}
