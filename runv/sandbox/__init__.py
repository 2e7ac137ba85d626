"""The VM side of a container: boot, the shim's event loop, the agent link, stdio."""
