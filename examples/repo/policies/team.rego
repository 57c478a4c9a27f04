# A repository's own policy, evaluated with modelherd's default bundle (read at the default branch's tip).
package modelherd

import rego.v1

# Every model deployment names at least one owner, so someone can approve and be paged.
deny contains {"msg": "metadata.owners is empty: name at least one owner", "field": "owners"} if {
	input.manifest != null
	count(input.manifest.owners) == 0
}
