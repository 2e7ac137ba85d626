"""The OCI bundle: config.json read, checked and turned into what the VM needs."""
