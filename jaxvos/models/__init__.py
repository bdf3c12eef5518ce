"""Model families (one file each) and the registry; every family implements `jaxvos.models.family.Family`."""
