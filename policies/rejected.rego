# rejected-version: a model version tagged rejected in the registry is not deployed.
package modelherd

import rego.v1

# The registry tag modelherd.rejected (set by /rollback or by hand; its value is the reason) refuses
# the version everywhere until the tag is removed.
violation contains {
	"policy": "rejected-version",
	"level": "deny",
	"field": model_field,
	"msg": sprintf("version %s of %s is tagged modelherd.rejected (%s); clear the tag to deploy it again", [
		input.registry.candidate.version, input.registry.candidate.name, reason,
	]),
} if {
	deploying
	reason := input.registry.candidate.tags["modelherd.rejected"]
}
