"""The sandbox: AWS on a loopback port, for trying HiveMind offline and for its tests.

* `control`: start, stop and find the daemon of a HiveMind home, the environment
  that points boto3 and the CDK CLI at it, and fault injection. Imports no moto.
* `server` / `daemon`: moto's server in this process, with everything below
  installed, plus a control endpoint (`/moto-api/hivemind/...`).
* `cloudformation`: moto's CloudFormation engine made to behave like AWS's
  (events, rollback, ordered deletion, updates, change sets).
* `provisioning` and the service modules (`ec2`, `elbv2`, `iam`, `rds`,
  `secretsmanager`, `monitoring`, `xray`, `s3`; listed in `resources`): every
  resource type HiveMind's stacks use, created and deleted through moto's backends.
* `connect_endpoint`: EC2 Instance Connect Endpoints (the SSH path to instances in
  private subnets), each a TLS WebSocket tunnel server on port 443 with a certificate
  from the sandbox's CA (`control.environment` names it in AWS_CA_BUNDLE).
* `hosts` and `host_tools`: each EC2 instance a real SSH host on its own loopback
  address, with a mount namespace, a service manager and the instance role's `aws`;
  `mirror`: the offline package mirror their builds install from; `user_data`: how far
  an instance's user data gets (it stops at a `dnf install` of a package AL2023 lacks).
* `databases`: each RDS instance a real PostgreSQL or MariaDB server.
* `forwarder`: each load balancer listener a reverse proxy with real health checks
  (HTTPS with an ISSUED ACM certificate); `certificates`: certificates for a domain
  from the sandbox's CA (`hivemind sandbox certificate`), and the trust store with that
  CA added that `control.environment` names in SSL_CERT_FILE.
* `telemetry`: what CloudWatch and X-Ray hold, measured from those stand-ins: each
  instance's CloudWatch agent (`cloudwatch_agent`: the app's log lines, CWAgent memory
  and disk) and X-Ray daemon (`xray_daemon`) as its user data starts them, and the
  AWS/EC2, AWS/ApplicationELB and AWS/RDS metrics (`usage`: what is read from /proc).
* `runtime`: what those stand-ins share (loopback addresses, files, shutdown).
* `faults`: creations, updates and deletions that fail on purpose; SSH hosts that
  refuse, commands that fail, health checks that fail.
* `xray`, `cloudtrail`: APIs moto lacks that HiveMind or the CDK CLI call; `iam`, as
  AWS: a service role must exist and trust its service, STS assumes only a role that
  exists, a role's permissions boundary must be a policy that exists.

Everything sandbox-specific lives in this package; product code only selects
the endpoint, credentials, SSH port and CA bundles (`control.environment`).
"""
