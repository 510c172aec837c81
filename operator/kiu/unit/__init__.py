"""The cpu runtime: a KServe-v2 server for a Triton-layout model repository."""
