package modelherd_test

import rego.v1

xmas := {"freeze": [{
	"start": "2026-12-20T00:00:00Z", "end": "2027-01-04T00:00:00Z",
	"environments": ["production"], "reason": "year-end freeze",
}]}

test_change_freeze_denies_inside_the_window if {
	some v in decide(patch(good, [["/now", "2026-12-24T12:00:00Z"]]), xmas).deny
	v.policy == "change-freeze"
	contains(v.msg, "year-end freeze")
}

test_change_freeze_passes_outside_the_window if {
	not "change-freeze" in denied(good, xmas)
	not "change-freeze" in denied(patch(good, [["/now", "2027-01-04T00:00:00Z"]]), xmas)
}

test_change_freeze_reads_offsets if {
	# 2026-12-19T23:30:00-01:00 is 00:30 UTC on the 20th: inside.
	"change-freeze" in denied(patch(good, [["/now", "2026-12-19T23:30:00-01:00"]]), xmas)
}

test_change_freeze_only_listed_environments if {
	not "change-freeze" in denied(patch(staging, [["/now", "2026-12-24T12:00:00Z"]]), xmas)
}

test_change_freeze_without_environments_freezes_all if {
	cfg := {"freeze": [{"start": "2026-12-20T00:00:00Z", "end": "2027-01-04T00:00:00Z"}]}
	"change-freeze" in denied(patch(staging, [["/now", "2026-12-24T12:00:00Z"]]), cfg)
}

test_change_freeze_refuses_an_unreadable_window if {
	"change-freeze" in denied(good, {"freeze": [{"start": "Christmas", "end": "2027-01-04T00:00:00Z"}]})
}

test_change_freeze_can_be_disabled if {
	cfg := object.union(xmas, {"disable": ["change-freeze"]})
	not "change-freeze" in denied(patch(good, [["/now", "2026-12-24T12:00:00Z"]]), cfg)
}
