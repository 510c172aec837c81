"""A real Kubernetes control plane on loopback, with a process-running node agent.

`hack/cluster.sh` is the entry point; see hack/README.md.
"""
