# gpu-cluster: GPUs are requested only on clusters that have them.
package modelherd

import rego.v1

# serving.resources.gpu > 0 needs a cluster whose server settings say `gpus: true`.
violation contains {
	"policy": "gpu-cluster",
	"level": "deny",
	"field": "serving.resources.gpu",
	"msg": sprintf("cluster %s has no GPU nodes; serving.resources.gpu asks for %d", [
		input.cluster.name, input.manifest.serving.resources.gpu,
	]),
} if {
	deploying
	input.manifest.serving.resources.gpu > 0
	input.cluster.known == true
	input.cluster.gpus != true
}

# A named GPU product (serving.resources.gpu_type) must be one the cluster lists, when it lists any.
violation contains {
	"policy": "gpu-cluster",
	"level": "deny",
	"field": "serving.resources.gpu_type",
	"msg": sprintf("cluster %s has no %s GPUs (it has: %s)", [
		input.cluster.name, gpu_type, concat(", ", input.cluster.gpu_types),
	]),
} if {
	deploying
	gpu_type := input.manifest.serving.resources.gpu_type
	gpu_type != null
	input.cluster.gpus == true
	count(input.cluster.gpu_types) > 0
	not gpu_type in input.cluster.gpu_types
}
