"""What a deployment costs: Cost Explorer by the deployment's tag, or HiveMind's estimate.

Every resource of a deployment's stack carries the tag `hivemind:deployment-id`, so
Cost Explorer's GetCostAndUsage filtered by it gives the deployment's real daily cost,
once the tag is activated as a cost allocation tag and Cost Explorer has caught up
(up to 24 hours). Until then the report falls back to the estimate recorded at deploy
time (`hivemind.cost`), and says why.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from hivemind.cost import HOURS_PER_MONTH
from hivemind.ops.api import error_code, error_message, explained
from hivemind.records import DeploymentState

# Cost Explorer is a global service answered in us-east-1 (aws partition).
COST_EXPLORER_REGION: Final = "us-east-1"
MAX_DAYS: Final = 90
METRIC: Final = "UnblendedCost"
DAYS_PER_MONTH: Final = HOURS_PER_MONTH / 24

NO_TAG_DATA: Final = (
    "Cost Explorer has no costs for this deployment yet: it shows them up to 24 hours "
    "late, and only once `{tag}` is activated as a cost allocation tag (Billing console "
    "> Cost allocation tags)"
)
NOT_ENABLED: Final = (
    "Cost Explorer is not enabled for this account (Billing console > Cost Explorer; "
    "its data starts the next day)"
)


class DailyCost(BaseModel):
    model_config = ConfigDict(frozen=True)

    day: date
    usd: float
    estimated: bool  # Cost Explorer's own flag: the day is not final yet


class CostReport(BaseModel):
    """The deployment's cost: real (Cost Explorer) or estimated, and the estimate beside."""

    model_config = ConfigDict(frozen=True)

    source: Literal["cost_explorer", "estimate"]
    tag: str  # key=value the costs are filtered by
    start: date  # first day asked for
    end: date  # the day after the last day asked for
    total_usd: float | None  # None: no real costs
    days: tuple[DailyCost, ...]
    by_service: dict[str, float]  # highest first
    run_rate_monthly_usd: float | None  # the complete days' average, times a month
    estimate_monthly_usd: float
    estimate_by_type: dict[str, float]  # resource type -> monthly estimate, highest first
    note: str = ""


def deployment_costs(ce: Any, state: DeploymentState, today: date) -> CostReport:
    """The deployment's daily costs since it was created (at most MAX_DAYS, `today`
    included) from Cost Explorer, or the recorded estimate with a note when Cost
    Explorer has none. Other AWS errors are HiveMindErrors."""
    import botocore.exceptions

    # The tag key is defined once, on the Python side in hivemind.orphans (the stack
    # applies the same key); imported here so `status` without --show-costs skips it.
    from hivemind.deployment_ids import TAG_DEPLOYMENT_ID

    created = datetime.fromisoformat(state.created_at).date()
    start = max(min(created, today), today - timedelta(days=MAX_DAYS - 1))
    end = today + timedelta(days=1)
    tag = f"{TAG_DEPLOYMENT_ID}={state.deployment_id}"
    estimate = _estimate(state)
    fallback = CostReport(
        source="estimate",
        tag=tag,
        start=start,
        end=end,
        total_usd=None,
        days=(),
        by_service={},
        run_rate_monthly_usd=None,
        estimate_monthly_usd=state.monthly_usd,
        estimate_by_type=estimate,
    )
    request: dict[str, Any] = {
        "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
        "Granularity": "DAILY",
        "Metrics": [METRIC],
        "Filter": {
            "Tags": {
                "Key": TAG_DEPLOYMENT_ID,
                "Values": [state.deployment_id],
                "MatchOptions": ["EQUALS"],
            }
        },
        "GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"}],
    }
    results: list[dict[str, Any]] = []
    with explained(
        what="could not read the deployment's costs",
        action="ce:GetCostAndUsage",
        where=f"Cost Explorer, tag {tag}",
    ):
        while True:
            try:
                page = ce.get_cost_and_usage(**request)
            except botocore.exceptions.ClientError as error:
                code, message = error_code(error), error_message(error)
                if code == "DataUnavailableException":
                    return fallback.model_copy(update={"note": NOT_ENABLED})
                if code == "AccessDeniedException" and "not enabled" in message.lower():
                    return fallback.model_copy(update={"note": NOT_ENABLED})
                raise
            results += page.get("ResultsByTime", [])
            token = page.get("NextPageToken")
            if not token:
                break
            request["NextPageToken"] = token
    days, by_service = _daily(results)
    total = math.fsum(d.usd for d in days)
    if not days or (total == 0 and not by_service):
        return fallback.model_copy(update={"note": NO_TAG_DATA.format(tag=tag)})
    complete = [d for d in days if d.day < today]
    return CostReport(
        source="cost_explorer",
        tag=tag,
        start=start,
        end=end,
        total_usd=total,
        days=tuple(days),
        by_service=dict(sorted(by_service.items(), key=lambda kv: (-kv[1], kv[0]))),
        run_rate_monthly_usd=(
            math.fsum(d.usd for d in complete) / len(complete) * DAYS_PER_MONTH
            if complete
            else None
        ),
        estimate_monthly_usd=state.monthly_usd,
        estimate_by_type=estimate,
        note="" if complete else "today only: the day is not over, and Cost Explorer lags",
    )


def _daily(results: list[dict[str, Any]]) -> tuple[list[DailyCost], dict[str, float]]:
    days: list[DailyCost] = []
    by_service: dict[str, float] = {}
    for result in results:
        groups = result.get("Groups", [])
        amounts = []
        for group in groups:
            amount = float(group.get("Metrics", {}).get(METRIC, {}).get("Amount", 0))
            service = (group.get("Keys") or ["?"])[0]
            if amount:
                by_service[service] = by_service.get(service, 0.0) + amount
            amounts.append(amount)
        total = result.get("Total", {}).get(METRIC)
        usd = float(total["Amount"]) if total else math.fsum(amounts)
        days.append(
            DailyCost(
                day=date.fromisoformat(result["TimePeriod"]["Start"]),
                usd=usd,
                estimated=bool(result.get("Estimated", False)),
            )
        )
    days.sort(key=lambda d: d.day)
    return days, by_service


def _estimate(state: DeploymentState) -> dict[str, float]:
    by_type: dict[str, float] = {}
    for resource in state.resources:
        if resource.monthly_usd:
            by_type[resource.resource_type] = (
                by_type.get(resource.resource_type, 0.0) + resource.monthly_usd
            )
    return dict(sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0])))
