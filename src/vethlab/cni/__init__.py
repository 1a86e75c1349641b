"""vethlab as a CNI plugin (type `vethlab`, console script `vethlab-cni`).

A runtime (Podman, containerd, Kubernetes) runs the plugin once per command with
CNI_* variables in its environment and a network configuration on stdin; it
answers with one JSON document on stdout.  The modules, each one job:

  main       the entry point: environment + stdin in, JSON out, every failure a CNI
             error object (never a traceback); imports only what the command needs
  protocol   spec versions, the CNI_* environment, CNI_ARGS, error codes
  config     the network configuration (the reference `bridge` plugin's keys)
  result     the result document, per spec version (0.4.0 keeps `ips[].version`)
  records    attachment state under $VETHLAB_STATE_DIR/.cni, per-network locks
  ipam       delegation to the IPAM plugin in CNI_PATH, or our own `hostlocal`
  hostlocal  a host-local-compatible allocator (same files, same lock)
  link       the kernel work over our netlink codec: bridge, veth pair, addresses
  ports      the NAT and published-port rules, in vethlab's own nftables table
  commands   ADD, DEL, CHECK, STATUS, GC for a network of the plugin's own
  labjoin    `{"lab": LAB, "network": NET}`: attach to a network of a running lab

It is started once per container and per command, so start-up is the cost that
counts (see bench/cni.py): nothing here imports YAML, argparse or pyroute2, and
the firewall model is imported only when a rule has to change.
"""
