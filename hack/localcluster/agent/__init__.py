"""The node agent: registers zoned nodes and runs their pods as local processes."""
