"""TRAINING_CONDITION on a stand-in graph: new checked data leads to a retrain; failed blocking checks do not."""

import dagster as dg

from assets.automation import TRAINING_CONDITION

GOOD = {"value": True}


@dg.asset
def augmented() -> None: ...


@dg.asset_check(asset=augmented, blocking=True)
def augmented_is_good() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=GOOD["value"])


@dg.asset
def base() -> None: ...


@dg.asset(deps=[augmented, base], automation_condition=TRAINING_CONDITION)
def checkpoint() -> None: ...


@dg.asset(deps=[checkpoint], automation_condition=TRAINING_CONDITION)
def merged() -> None: ...


ALL = [augmented, augmented_is_good, base, checkpoint, merged]


class Ticks:
    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance, self.cursor = instance, None

    def requested(self) -> set[str]:
        result = dg.evaluate_automation_conditions(defs=ALL, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return {name for name, asset in (("checkpoint", checkpoint), ("merged", merged))
                if result.get_num_requested(asset.key)}


def test_new_data_retrains_once_and_failed_checks_hold_it_back() -> None:
    with dg.instance_for_test() as instance:
        ticks = Ticks(instance)
        assert ticks.requested() == set(), "nothing upstream exists yet"

        GOOD["value"] = True
        dg.materialize([augmented, augmented_is_good, base], instance=instance)
        # One request covers the chain: merged follows the checkpoint that will be materialized.
        assert ticks.requested() == {"checkpoint", "merged"}
        dg.materialize([checkpoint, merged], instance=instance)
        assert ticks.requested() == set(), "everything is up to date"

        GOOD["value"] = False
        dg.materialize([augmented, augmented_is_good], instance=instance, raise_on_error=False)
        assert ticks.requested() == set(), "bad data must not be promoted to a model"

        GOOD["value"] = True
        dg.materialize([augmented, augmented_is_good], instance=instance)
        assert ticks.requested() == {"checkpoint", "merged"}
