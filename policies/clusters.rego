# known-cluster: a deployment names a cluster the server knows.
package modelherd

import rego.v1

# input.cluster.known is false when the cluster is not in the server settings: nothing could deploy it.
violation contains {
	"policy": "known-cluster",
	"level": "deny",
	"field": "cluster",
	"msg": sprintf("cluster %s is not configured on the modelherd server", [input.cluster.name]),
} if {
	deploying
	input.cluster.known == false
}
