"""A deployment's CloudWatch dashboard: its console URL, opened in a browser when there
is one to open."""

from __future__ import annotations

import os
import urllib.parse

from pydantic import BaseModel, ConfigDict

from hivemind.errors import BadInputError
from hivemind.records import DeploymentState, Status


class DashboardLink(BaseModel):
    model_config = ConfigDict(frozen=True)

    deployment_id: str
    name: str
    region: str
    url: str


def dashboard_url(region: str, name: str) -> str:
    """The CloudWatch console's page for the dashboard `name` in `region`."""
    query = urllib.parse.urlencode({"region": region})
    return (
        f"https://console.aws.amazon.com/cloudwatch/home?{query}"
        f"#dashboards:name={urllib.parse.quote(name, safe='')}"
    )


def dashboard_link(state: DeploymentState) -> DashboardLink:
    """The deployment's dashboard (its stack's `DashboardName` output), or a BadInputError
    saying why it has none."""
    name = state.outputs.get("DashboardName")
    if state.status == Status.DESTROYED:
        raise BadInputError(
            f"{state.deployment_id} is destroyed, and its dashboard with it",
            next_step="`hivemind list` shows the deployments that still run",
        )
    if not name:
        raise BadInputError(
            f"{state.deployment_id} has no dashboard yet",
            cause=f"its stack has not reported one (status {state.status.value})",
            next_step=f"`hivemind status {state.deployment_id}` shows how far it got",
        )
    return DashboardLink(
        deployment_id=state.deployment_id,
        name=name,
        region=state.region,
        url=dashboard_url(state.region, name),
    )


def open_in_browser(url: str) -> bool:
    """Open `url` in the user's graphical browser; False when there is none. A console
    browser (lynx, w3m) would take over the terminal, so it is used only when $BROWSER
    names it."""
    import webbrowser

    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    if type(browser) is webbrowser.GenericBrowser and not os.environ.get("BROWSER"):
        return False
    try:
        return bool(browser.open(url, new=2))
    except OSError:
        return False
