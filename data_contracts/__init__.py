"""What data must be: the robot catalog, command models, parser/renderers, validator, table contracts."""
