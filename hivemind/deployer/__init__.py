"""The on-box deploy: reach the instances over SSH, release the app on each, wait for the load balancer."""
