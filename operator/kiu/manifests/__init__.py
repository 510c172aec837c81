"""Pure builders of the Kubernetes objects kiu owns (plain dicts)."""
