"""End-to-end tests of the local cluster harness (hack/)."""
