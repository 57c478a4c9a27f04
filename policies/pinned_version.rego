# pinned-version: protected environments serve a pinned model version, never a mutable alias.
package modelherd

import rego.v1

# An alias (model.alias, e.g. @champion) can be moved in the registry without a pull request, so a
# protected environment must name model.version instead.
violation contains {
	"policy": "pinned-version",
	"level": "deny",
	"field": "model.alias",
	"msg": sprintf("%s is protected: pin model.version instead of the mutable alias @%s%s", [
		env_name, input.manifest.model.alias, _resolves_to,
	]),
} if {
	deploying
	protected
	input.manifest.model.alias != null
}

_resolves_to := sprintf(" (it points at version %s now)", [input.registry.candidate.version]) if {
	input.registry.candidate.version
} else := ""
