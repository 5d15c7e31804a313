"""Deployment files (Dockerfiles, Kubernetes manifests, Google Cloud setup) and their checks."""
