package modelherd_test

import rego.v1

test_gpu_cluster_denies_gpus_on_a_cpu_cluster if {
	"gpu-cluster" in denied(patch(good, [["/cluster/gpus", false], ["/cluster/gpu_types", []]]), {})
}

test_gpu_cluster_passes_on_a_gpu_cluster if {
	not "gpu-cluster" in denied(good, {})
}

test_gpu_cluster_passes_without_gpus if {
	inp := patch(good, [["/cluster/gpus", false], ["/manifest/serving/resources/gpu", 0], ["/manifest/serving/resources/gpu_type", null]])
	not "gpu-cluster" in denied(inp, {})
}

test_gpu_cluster_denies_a_gpu_type_the_cluster_lacks if {
	some v in decide(patch(good, [["/manifest/serving/resources/gpu_type", "h100"]]), {}).deny
	v.policy == "gpu-cluster"
	v.field == "serving.resources.gpu_type"
}

test_gpu_cluster_can_be_disabled if {
	not "gpu-cluster" in denied(patch(good, [["/cluster/gpus", false]]), {"disable": ["gpu-cluster"]})
}
