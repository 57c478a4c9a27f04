# Shared helpers of modelherd's default bundle (package modelherd).
#
# Each default rule adds an object to `violation`:
#   {"policy": <rule id>, "level": "deny" | "warn", "msg": <text>, "field": <dotted path or null>}
# and the rules below turn them into `deny` and `warn`, after the repository's overrides in
# data.modelherd.config (policies.data of .modelherd.yaml, read from the pull request's base):
#   disable:  ["canary-required", ...]          rule ids that never fire
#   severity: {"validation-status": "deny"}    raise or lower a rule: "deny", "warn" or "off"
# Repository policies may write `deny contains msg` / `warn contains msg` directly.
package modelherd

import rego.v1

# A value of data.modelherd.config, or `fallback` when the repository did not set it.
setting(key, fallback) := object.get(data.modelherd.config, key, fallback)

# A rule id the repository switched off, through `disable` or `severity: off`.
disabled(id) if id in setting("disable", [])

disabled(id) if setting("severity", {})[id] == "off"

# The level a violation is reported at: the repository's `severity` override, else the rule's own.
level(v) := object.get(setting("severity", {}), v.policy, v.level)

# Default-bundle violations at level deny, without the internal `level` key.
deny contains object.remove(v, ["level"]) if {
	some v in violation
	not disabled(v.policy)
	level(v) == "deny"
}

# Default-bundle violations at level warn.
warn contains object.remove(v, ["level"]) if {
	some v in violation
	not disabled(v.policy)
	level(v) == "warn"
}

# The environment is protected in .modelherd.yaml (production by default).
protected if input.environment.protected == true

# The change creates or updates a deployment (not a delete, not "no change").
deploying if {
	input.change.action in {"create", "update"}
	input.manifest != null
}

# The served model version changes: a new deployment, or an update whose resolved version differs.
version_changed if {
	deploying
	input.change.action == "create"
}

version_changed if {
	deploying
	input.change.action == "update"
	input.change.version_from != input.change.version_to
}

# The manifest field that names the model reference: model.alias for an alias, else model.version.
model_field := "model.alias" if input.manifest.model.alias != null

else := "model.version"

# Environment name, for messages.
env_name := input.environment.name

# A Kubernetes quantity ("500m", "2Gi", "8", 4) as a number; undefined when it is not one.
quantity(q) := q if is_number(q)

quantity(q) := units.parse(q) if is_string(q)

# An RFC 3339 time as nanoseconds. regopy's time.parse_rfc3339_ns refuses a trailing "Z",
# so it is rewritten to the equivalent "+00:00" first.
rfc3339_ns(t) := time.parse_rfc3339_ns(_utc_offset(t))

_utc_offset(t) := concat("", [substring(t, 0, count(t) - 1), "+00:00"]) if endswith(upper(t), "Z")

else := t
