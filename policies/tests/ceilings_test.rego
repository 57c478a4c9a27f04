package modelherd_test

import rego.v1

limits := {"ceilings": {"cpu": "8", "memory": "64Gi", "gpu": 4, "replicas": 50}}

test_resource_ceilings_pass_within_limits if {
	not "resource-ceilings" in denied(good, limits)
}

test_resource_ceilings_compare_cpu_quantities if {
	"resource-ceilings" in denied(patch(good, [["/manifest/serving/resources/cpu", "8500m"]]), limits)
	not "resource-ceilings" in denied(patch(good, [["/manifest/serving/resources/cpu", "7500m"]]), limits)
}

test_resource_ceilings_compare_memory_units if {
	# 65G is 65e9 bytes, below 64Gi (68.7e9); 70G is above.
	not "resource-ceilings" in denied(patch(good, [["/manifest/serving/resources/memory", "65G"]]), limits)
	some v in decide(patch(good, [["/manifest/serving/resources/memory_limit", "70G"]]), limits).deny
	v.field == "serving.resources.memory_limit"
}

test_resource_ceilings_bound_gpus_and_replicas if {
	r := decide(patch(good, [["/manifest/serving/resources/gpu", 8], ["/manifest/serving/replicas/max", 60]]), limits)
	{v.field | some v in r.deny} == {"serving.resources.gpu", "serving.replicas.max"}
}

test_resource_ceilings_per_environment if {
	cfg := {"ceilings": {"cpu": "8", "environments": {"production": {"cpu": "1"}}}}
	"resource-ceilings" in denied(good, cfg)
	not "resource-ceilings" in denied(staging, cfg)
}

test_resource_ceilings_refuse_an_unreadable_ceiling if {
	"resource-ceilings" in denied(good, {"ceilings": {"cpu": "lots"}})
}

test_resource_ceilings_can_be_disabled if {
	not "resource-ceilings" in denied(patch(good, [["/manifest/serving/resources/cpu", "64"]]), {
		"ceilings": {"cpu": "8"}, "disable": ["resource-ceilings"],
	})
}
