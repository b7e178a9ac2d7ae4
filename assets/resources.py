"""Resources of the code location: where the lake and the artifacts live, and which params file to read."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipelines.config import Params, TrainConfig, artifacts_root, lake_root, load_params


class LakeResource(dg.ConfigurableResource):
    """Root folder of the Delta tables; unset means $SOP2CMD_LAKE, else ./lake."""

    root: str | None = None

    def path(self) -> Path:
        return Path(self.root) if self.root else lake_root()


class ArtifactsResource(dg.ConfigurableResource):
    """Root folder of charts, checkpoints and models; unset means $SOP2CMD_ARTIFACTS, else ./artifacts."""

    root: str | None = None

    def path(self) -> Path:
        return Path(self.root) if self.root else artifacts_root()


class ParamsResource(dg.ConfigurableResource):
    """The params file every stage reads (the same one DVC tracks), and the training profile of the run.

    The profile is run-level (resource config, e.g. `resources: {params: {config: {profile: smoke}}}`), so every
    asset of one run trains, merges, evaluates and gates with the same profile.
    """

    path: str = "params.yaml"
    # Unset: $SOP2CMD_PROFILE, else params.yaml training.profile.
    profile: str | None = None

    def load(self) -> Params:
        return load_params(self.path)

    def training_profile(self) -> tuple[str, TrainConfig]:
        """The run's training profile and its settings (`pipelines.config.TrainingParams.resolve`)."""
        return self.load().training.resolve(self.profile)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {"lake": LakeResource(), "artifacts": ArtifactsResource(), "params": ParamsResource()}
