# resource-ceilings: requests and limits stay under the repository's ceilings.
package modelherd

import rego.v1

# data.modelherd.config.ceilings: {cpu: "8", memory: "64Gi", gpu: 4, replicas: 50}, optionally with
# per-environment values under ceilings.environments.<env> that replace the shared ones.
ceilings := object.union(
	object.remove(setting("ceilings", {}), ["environments"]),
	object.get(setting("ceilings", {}), ["environments", env_name], {}),
)

# Which manifest fields each ceiling bounds.
_bounded := {
	"cpu": ["cpu", "cpu_limit"],
	"memory": ["memory", "memory_limit"],
}

# A CPU or memory request or limit above its ceiling (quantities compared as numbers: 500m < 1 < 2Gi).
violation contains {
	"policy": "resource-ceilings",
	"level": "deny",
	"field": sprintf("serving.resources.%s", [name]),
	"msg": sprintf("serving.resources.%s is %s, above the ceiling of %s", [name, value, ceilings[kind]]),
} if {
	deploying
	some kind, names in _bounded
	some name in names
	value := input.manifest.serving.resources[name]
	value != null
	quantity(value) > quantity(ceilings[kind])
}

# More GPUs than the ceiling.
violation contains {
	"policy": "resource-ceilings",
	"level": "deny",
	"field": "serving.resources.gpu",
	"msg": sprintf("serving.resources.gpu is %d, above the ceiling of %v", [input.manifest.serving.resources.gpu, ceilings.gpu]),
} if {
	deploying
	input.manifest.serving.resources.gpu > quantity(ceilings.gpu)
}

# More replicas (the maximum, or the fixed count) than the ceiling.
violation contains {
	"policy": "resource-ceilings",
	"level": "deny",
	"field": field,
	"msg": sprintf("%s is %d, above the ceiling of %v replicas", [field, n, ceilings.replicas]),
} if {
	deploying
	[field, n] := _replicas
	n > quantity(ceilings.replicas)
}

_replicas := ["serving.replicas.max", input.manifest.serving.replicas.max] if {
	input.manifest.serving.replicas.max != null
} else := ["serving.replicas.min", input.manifest.serving.replicas.min]

# A ceiling that is not a quantity is a mistake in .modelherd.yaml: fail closed rather than ignore it.
violation contains {
	"policy": "resource-ceilings",
	"level": "deny",
	"field": null,
	"msg": sprintf("policies.data.ceilings.%s is not a number or Kubernetes quantity: %v", [kind, value]),
} if {
	deploying
	some kind, value in ceilings
	not quantity(value)
}
