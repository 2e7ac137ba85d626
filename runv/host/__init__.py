"""The host side of a container outside its VM: cgroups, network, hooks, syscalls."""
