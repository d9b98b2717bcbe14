"""Renders deploy/helm/lms-server offline with Helm's own template engine (the helm-python-sdk
package binds Helm's Go SDK; no cluster, no helm binary), lints it strictly, and validates every
rendered manifest against Kubernetes' OpenAPI schemas (the kubernetes-validate package, strict:
unknown fields are errors). Once with the default values, once with RPC workers and an API key.
Prints {"default": [...manifests], "rpc": [...]} as JSON on stdout; exits non-zero on a finding.

    python3 -m pip install helm-python-sdk kubernetes-validate
    python3 deploy/helm/check-chart.py
"""

import json
import os
import sys

import helm_python as helm
import kubernetes_validate
import yaml

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lms-server")
KUBERNETES = "1.30.0"
CASES = {
    "default": {},
    "rpc": {"rpcWorkers": {"enabled": True, "count": 2}, "server": {"apiKeySecret": "lms-key"}, "replicas": 2},
}


def main():
    report = helm.lint(CHART, strict=True, kube_version="v" + KUBERNETES)
    findings = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
    if findings:
        sys.exit(f"helm lint: {findings}")
    out = {}
    chart = helm.Chart.load(CHART)
    for case, values in CASES.items():
        rendered = chart.render(values, name="demo", namespace="llm", is_install=True)
        manifests = []
        for path, text in sorted(rendered.items()):
            if not path.endswith((".yaml", ".yml")):
                continue
            for doc in yaml.safe_load_all(text):
                if not doc:
                    continue
                try:
                    kubernetes_validate.validate(doc, KUBERNETES, strict=True)
                except kubernetes_validate.ValidationError as e:
                    sys.exit(f"{case}: {path}: {doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.path)}")
                manifests.append(doc)
        out[case] = manifests
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
