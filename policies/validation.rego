# validation-status: a version entering a protected environment was validated.
package modelherd

import rego.v1

# The candidate's registry tag validation_status should be "passed". Only a warning by default;
# a repository makes it blocking with severity: {"validation-status": "deny"}.
violation contains {
	"policy": "validation-status",
	"level": "warn",
	"field": model_field,
	"msg": sprintf("version %s has validation_status %s, not passed, and is entering protected %s", [
		input.registry.candidate.version, status, env_name,
	]),
} if {
	version_changed
	protected
	input.registry.candidate != null
	status := object.get(input.registry.candidate.tags, "validation_status", "(unset)")
	status != "passed"
}
