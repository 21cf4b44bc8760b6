"""The on-box deploy: reach the instances over SSH, release the app on each, and wait
for the load balancer to report them healthy."""
