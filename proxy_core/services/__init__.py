"""Services: the gateway's policy, independent of HTTP and of the libraries behind the adapters."""
