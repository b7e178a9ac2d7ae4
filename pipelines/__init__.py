"""How each stage transforms data: plain, typed Python usable without Dagster."""
