# protected-approval and protected-delete: protected environments change only with an approval.
package modelherd

import rego.v1

# The approval asked for; data.modelherd.config.approvals ({count, owners, users, teams}) replaces
# the default of one approval from the manifest's owners.
_approval := object.union({"count": 1, "owners": true, "users": [], "teams": []}, setting("approvals", {}))

# protected-approval: a new version entering a protected environment needs an owner's approval.
approvals contains object.union(_approval, {"reason": sprintf("version %s enters protected %s", [
	_version_to, env_name,
])}) if {
	not disabled("protected-approval")
	version_changed
	protected
}

_version_to := input.change.version_to if input.change.version_to != null

else := "(unknown)"

# protected-delete: removing a deployment from a protected environment warns ...
violation contains {
	"policy": "protected-delete",
	"level": "warn",
	"field": null,
	"msg": sprintf("this deletes %s from protected %s: the endpoint stops serving", [input.change.name, env_name]),
} if {
	input.change.action == "delete"
	protected
}

# ... and needs an approval.
approvals contains object.union(_approval, {"reason": sprintf("%s is deleted from protected %s", [
	input.change.name, env_name,
])}) if {
	not disabled("protected-delete")
	input.change.action == "delete"
	protected
}
