#!/usr/bin/env python3
"""Checks deploy/k8s offline: renders it with `kubectl kustomize`, validates every object
against the Kubernetes API schemas (`kubernetes-validate --strict`: unknown fields are
errors), proves the validator rejects a broken copy, and checks what the schemas cannot:
every container probed (readiness and liveness), non-root without capabilities or
privilege escalation, a PodDisruptionBudget selecting each Deployment, Services whose
named target ports exist, and probes on declared ports.

    VENV/bin/python deploy/k8s/check.py KUBECTL KUBERNETES_VALIDATE
"""
import subprocess
import sys
import tempfile

import yaml  # PyYAML, installed with kubernetes-validate

K8S_VERSION = "1.37.0"


def main():
    kubectl, validate = sys.argv[1], sys.argv[2]
    rendered = subprocess.run(
        [kubectl, "kustomize", "deploy/k8s"], check=True, capture_output=True, text=True
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(rendered)
        f.flush()
        subprocess.run([validate, "--strict", "--quiet", "-k", K8S_VERSION, f.name], check=True)
    # A validator that passes anything proves nothing: a misspelt field must fail.
    broken = rendered.replace("\n  replicas: 2\n", "\n  replica: 2\n", 1)
    assert broken != rendered
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(broken)
        f.flush()
        r = subprocess.run(
            [validate, "--strict", "--quiet", "-k", K8S_VERSION, f.name], capture_output=True
        )
        assert r.returncode != 0, "the validator accepted an unknown field"

    items = [o for o in yaml.safe_load_all(rendered) if o]
    by_kind = {}
    for o in items:
        by_kind.setdefault(o["kind"], []).append(o)
    problems = []
    workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
    for w in workloads:
        name = w["metadata"]["name"]
        spec = w["spec"]["template"]["spec"]
        pod_sc = spec.get("securityContext", {})
        if not pod_sc.get("runAsNonRoot"):
            problems.append(f"{name}: runAsNonRoot not set")
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            ports = {p.get("name") for p in c.get("ports", [])} | {
                p["containerPort"] for p in c.get("ports", [])
            }
            for probe in ("readinessProbe", "livenessProbe"):
                p = c.get(probe)
                if not p:
                    problems.append(f"{name}/{c['name']}: no {probe}")
                    continue
                port = (p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
                if port not in ports:
                    problems.append(f"{name}/{c['name']}: {probe} on undeclared port {port}")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}/{c['name']}: allowPrivilegeEscalation not false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc["capabilities"].get("add"):
                problems.append(f"{name}/{c['name']}: capabilities not dropped")
            if not sc.get("readOnlyRootFilesystem"):
                problems.append(f"{name}/{c['name']}: root filesystem writable")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    for d in by_kind.get("Deployment", []):
        labels = d["spec"]["template"]["metadata"]["labels"]
        if not any(
            all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())
            for p in pdbs
        ):
            problems.append(f"{d['metadata']['name']}: no PodDisruptionBudget")
    for s in by_kind.get("Service", []):
        sel = s["spec"]["selector"]
        targets = [
            w for w in workloads
            if all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
        ]
        if not targets:
            problems.append(f"service {s['metadata']['name']}: selects no workload")
        for port in s["spec"]["ports"]:
            named = {p.get("name") for w in targets
                     for c in w["spec"]["template"]["spec"]["containers"]
                     for p in c.get("ports", [])}
            if port["targetPort"] not in named:
                problems.append(f"service {s['metadata']['name']}: target port {port['targetPort']} not declared")
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"deploy/k8s OK: {len(items)} objects valid for Kubernetes {K8S_VERSION}")


if __name__ == "__main__":
    main()
