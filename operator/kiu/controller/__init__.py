"""kopf wiring: parse -> decide (policy) -> build (manifests) -> apply (k8s) -> status."""
