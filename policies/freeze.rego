# change-freeze: no changes during a freeze window.
package modelherd

import rego.v1

# data.modelherd.config.freeze: [{start, end, environments, reason}] with RFC 3339 times; a window
# without environments (or with an empty list) freezes every environment. input.now is compared.
violation contains {
	"policy": "change-freeze",
	"level": "deny",
	"field": null,
	"msg": sprintf("%s is frozen until %s%s", [env_name, window.end, _because(window)]),
} if {
	input.change.action != "no change"
	some window in setting("freeze", [])
	_applies(window)
	now := rfc3339_ns(input.now)
	now >= rfc3339_ns(window.start)
	now < rfc3339_ns(window.end)
}

# A window whose times cannot be read freezes nothing silently: it is reported so it can be fixed.
violation contains {
	"policy": "change-freeze",
	"level": "deny",
	"field": null,
	"msg": sprintf("policies.data.freeze[%d] needs RFC 3339 start and end times (e.g. 2026-12-20T00:00:00Z)", [i]),
} if {
	input.change.action != "no change"
	some i, window in setting("freeze", [])
	not _readable(window)
}

_applies(window) if count(object.get(window, "environments", [])) == 0

_applies(window) if env_name in window.environments

_readable(window) if {
	rfc3339_ns(window.start)
	rfc3339_ns(window.end)
}

_because(window) := sprintf(": %s", [window.reason]) if window.reason

else := ""
