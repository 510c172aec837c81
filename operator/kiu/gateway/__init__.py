"""The data plane: protocol-neutral core with thin AWS-JSON and REST adapters."""
