//! DNS: the server of each network, its local zone and its upstream forwarding.
