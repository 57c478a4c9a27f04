# Shared fixtures and helpers of the default bundle's tests.
#
# regopy 1.5 cannot replace the whole input (`with input as x` fails) nor take a rule's field after
# `as`, so `decide` replaces each input key with a function argument, which works.
package modelherd_test

import data.modelherd
import rego.v1

# A change that passes every default rule: a new pinned, validated version entering protected
# production with canary steps on a known on-prem GPU cluster.
good := {
	"manifest": {
		"name": "fraud", "environment": "production", "cluster": "prod-eu", "namespace": "models",
		"model": {"registry": "mlflow", "name": "fraud", "version": 8, "alias": null},
		"serving": {
			"runtime": "kserve", "format": "sklearn",
			"resources": {"cpu": "2", "memory": "8Gi", "gpu": 1, "gpu_type": "a100", "cpu_limit": null, "memory_limit": null},
			"replicas": {"min": 2, "max": 10, "scale_metric": null, "scale_target": null},
		},
		"rollout": {"canary": [10, 50, 100], "verify_for": "10m", "timeout": "15m"},
		"gates": {"metrics": {}, "require_ready": true},
		"owners": ["@acme/risk-ml"], "labels": {"data-class": "pii"}, "description": null, "url": null,
	},
	"previous": null,
	"change": {
		"action": "update", "name": "fraud", "environment": "production",
		"changed_fields": ["model.version"], "version_from": "7", "version_to": "8",
	},
	"environment": {"name": "production", "protected": true, "order": 1, "approvals": null},
	"cluster": {
		"name": "prod-eu", "provider": "onprem", "region": null, "onprem": true,
		"gpus": true, "gpu_types": ["a100"], "labels": {}, "known": true,
	},
	"registry": {
		"candidate": {"name": "fraud", "version": "8", "status": "READY", "tags": {"validation_status": "passed"}},
		"current": {"name": "fraud", "version": "7", "status": "READY", "tags": {}},
	},
	"pr": {"number": 12, "author": "alice", "title": "fraud v8", "base_ref": "main", "head_sha": "abc", "labels": []},
	"now": "2026-11-02T10:00:00Z",
}

# The same change in unprotected staging.
staging := patch(good, [
	["/environment", {"name": "staging", "protected": false, "order": 0, "approvals": null}],
	["/change/environment", "staging"],
	["/manifest/environment", "staging"],
])

# `inp` with each [json-pointer, value] pair set.
patch(inp, pairs) := json.patch(inp, [{"op": "add", "path": p, "value": v} | some [p, v] in pairs])

# The policies' outputs for `inp` under repository data `cfg`.
decide(inp, cfg) := {"deny": d, "warn": w, "approvals": a} if {
	d := modelherd.deny with input.manifest as inp.manifest with input.previous as inp.previous
		with input.change as inp.change with input.environment as inp.environment
		with input.cluster as inp.cluster with input.registry as inp.registry
		with input.pr as inp.pr with input.now as inp.now with data.modelherd.config as cfg
	w := modelherd.warn with input.manifest as inp.manifest with input.previous as inp.previous
		with input.change as inp.change with input.environment as inp.environment
		with input.cluster as inp.cluster with input.registry as inp.registry
		with input.pr as inp.pr with input.now as inp.now with data.modelherd.config as cfg
	a := modelherd.approvals with input.manifest as inp.manifest with input.previous as inp.previous
		with input.change as inp.change with input.environment as inp.environment
		with input.cluster as inp.cluster with input.registry as inp.registry
		with input.pr as inp.pr with input.now as inp.now with data.modelherd.config as cfg
}

# Rule ids among denials / warnings.
denied(inp, cfg) := {v.policy | some v in decide(inp, cfg).deny}

warned(inp, cfg) := {v.policy | some v in decide(inp, cfg).warn}

test_good_change_passes_every_rule if {
	r := decide(good, {})
	count(r.deny) == 0
	count(r.warn) == 0
}
