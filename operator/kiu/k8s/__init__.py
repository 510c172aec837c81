"""The only layer that talks to the Kubernetes API; maps its errors to kiu errors."""
