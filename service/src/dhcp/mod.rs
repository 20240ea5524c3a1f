//! DHCPv4: the server of each network, its pure packet logic and its lease store.
