"""Ops: what a running deployment is doing — its logs, metrics, costs and traces.

Library code under `hivemind status --show-*` and `hivemind dashboard`; it knows
nothing about click. Each module reads one AWS API, the same on AWS and in the sandbox:

* `logs`: the app's log group (CloudWatch Logs FilterLogEvents).
* `metrics`: instance, load balancer and database metrics (CloudWatch GetMetricData).
* `costs`: Cost Explorer by the deployment's tag, or the recorded estimate.
* `traces`: X-Ray trace summaries and traces of the app's service.
* `dashboard`: the CloudWatch dashboard's console URL.
* `detect`: pure error and anomaly detection (`detect_log_errors`, `anomalies`), which
  Medic uses too.
* `overview` gathers the views a status asks for; `render` writes them for a terminal;
  `sparkline`, `window` and `watched` are their small helpers.

Importing this package imports nothing else: `status` without ops flags stays as light
as before.
"""
