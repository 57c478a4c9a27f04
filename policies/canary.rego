# canary-required: protected environments roll out in canary steps.
package modelherd

import rego.v1

# A create or update in a protected environment needs rollout.canary (e.g. [10, 50, 100]) so that
# a bad version never takes all traffic at once.
violation contains {
	"policy": "canary-required",
	"level": "deny",
	"field": "rollout.canary",
	"msg": sprintf("%s is protected: roll out in canary steps (rollout.canary, e.g. [10, 50, 100])", [env_name]),
} if {
	deploying
	protected
	not _has_canary
}

_has_canary if count(input.manifest.rollout.canary) > 0
