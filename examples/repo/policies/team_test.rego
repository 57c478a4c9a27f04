# Tests of team.rego, run with `modelherd policy test` (like `opa test`).
package team_test

import data.modelherd
import rego.v1

test_owners_required if {
	some d in modelherd.deny with input.manifest as {"owners": []}
	d.msg == "metadata.owners is empty: name at least one owner"
}

test_owners_present_pass if {
	denied := [d | some d in modelherd.deny with input.manifest as {"owners": ["alice"]}; d.field == "owners"]
	count(denied) == 0
}
