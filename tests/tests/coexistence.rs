//! guestnet next to other users of the firewall. A Docker-like ruleset
//! (iptables-nft's `table ip filter` with a forward chain whose policy is
//! drop and which jumps to DOCKER-USER first) cuts forwarded traffic, and
//! an accept in guestnet's own table cannot override a drop in another
//! table. guestnet puts its accepts into DOCKER-USER, Docker's chain for
//! other software's rules, and changes nothing else of Docker's.

use guestnet_tests::lab::{HOST_UPLINK_ADDR, LAN_ADDR, UPLINK};
use guestnet_tests::{probe, root_or_skip, Lab, World};

/// What Docker installs through iptables-nft, in short.
fn install_docker_like_ruleset(w: &World, host: &str) {
    w.sh(
        host,
        "nft -f - <<'EOF'\n\
         table ip filter {\n\
           chain DOCKER-USER { }\n\
           chain FORWARD { type filter hook forward priority filter; policy drop; jump DOCKER-USER; }\n\
         }\n\
         EOF",
    );
    assert!(
        w.ip(host, "link show").contains(UPLINK),
        "the lab is not as expected"
    );
}

fn forward_chain(w: &World, host: &str) -> String {
    let out = w.exec(host, &["nft", "list", "chain", "ip", "filter", "FORWARD"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn docker_user(w: &World, host: &str) -> String {
    let out = w.exec(
        host,
        &["nft", "list", "chain", "ip", "filter", "DOCKER-USER"],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const NAT: &str = r#"
name = "dk"
mode = "nat"
bridge = "gnbrdk"
[ipv4]
address = "10.77.9.1/24"
"#;

#[test]
fn nat_guests_get_out_through_a_drop_policy_installed_before() {
    root_or_skip!();
    let lab = Lab::build(|w, host, _| install_docker_like_ruleset(w, host));
    let (w, host) = (&lab.world, &lab.host);
    let forward_before = forward_chain(w, host);
    let gn = lab.gn();
    let net = gn.define(NAT);
    gn.start(&net);
    let g1 = lab.add_guest("g1", "vg1", "gnbrdk", "10.77.9.10/24", Some("10.77.9.1"));
    probe::assert_ping(w, &g1, LAN_ADDR);
    let peer = probe::tcp_peer(w, &lab.lan, 7101, &g1, LAN_ADDR);
    assert_eq!(peer.as_deref(), Some(HOST_UPLINK_ADDR));
    // Docker's own chain is untouched; DOCKER-USER holds guestnet's rules.
    assert_eq!(forward_chain(w, host), forward_before);
    assert!(
        docker_user(w, host).contains("guestnet:dk:out"),
        "{}",
        docker_user(w, host)
    );
    // The lan still cannot open a connection to the guest.
    w.ip(
        &lab.lan,
        &format!("route add 10.77.9.0/24 via {HOST_UPLINK_ADDR}"),
    );
    assert_eq!(probe::tcp_peer(w, &g1, 7102, &lab.lan, "10.77.9.10"), None);
    // Stopping removes guestnet's rules from DOCKER-USER, and only those.
    gn.stop(&net);
    assert!(
        !docker_user(w, host).contains("guestnet:"),
        "{}",
        docker_user(w, host)
    );
    assert_eq!(forward_chain(w, host), forward_before);
}

#[test]
fn nat_guests_keep_getting_out_when_the_drop_policy_arrives_later() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, host) = (&lab.world, &lab.host);
    let gn = lab.gn();
    let net = gn.define(NAT);
    gn.start(&net);
    let g1 = lab.add_guest("g1", "vg1", "gnbrdk", "10.77.9.10/24", Some("10.77.9.1"));
    probe::assert_ping(w, &g1, LAN_ADDR);
    // Docker starts after guestnet: guestnet notices its chain by itself.
    install_docker_like_ruleset(w, host);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !docker_user(w, host).contains("guestnet:dk:out") && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        docker_user(w, host).contains("guestnet:dk:out"),
        "{}",
        docker_user(w, host)
    );
    probe::assert_ping(w, &g1, LAN_ADDR);
    // Docker flushing its user chain (as on a reinstall): restored again.
    w.exec_ok(
        host,
        &["nft", "flush", "chain", "ip", "filter", "DOCKER-USER"],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !docker_user(w, host).contains("guestnet:dk:out") && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    probe::assert_ping(w, &g1, LAN_ADDR);
    let _ = net;
}
