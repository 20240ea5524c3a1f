//! A real VM on a port made by AttachGuest: qemu (KVM, else TCG) boots
//! Debian's kernel with the harness's initramfs on the tap guestnetd made;
//! the guest's lease arrives as LeaseAdded with its MAC, and the guest
//! answers a ping from the host. One test, with a generous timeout.

use guestnet_tests::guest::{attach, tap_opts};
use guestnet_tests::monitor::Monitor;
use guestnet_tests::vm::{Vm, VmAssets, VmOpts, BOOT_TIMEOUT};
use guestnet_tests::{probe, root_or_skip, vm_or_skip, Lab};

const MAC: &str = "52:54:00:7e:00:01";

#[test]
fn a_vm_on_an_attached_tap_takes_a_lease_and_answers_ping() {
    root_or_skip!();
    vm_or_skip!();
    let assets = VmAssets::get();
    let lab = Lab::new();
    let gn = lab.gn();
    let net = gn.create(
        r#"
name = "vmnet"
bridge = "gnbrvm"
[ipv4]
address = "10.66.0.1/24"
dhcp = { start = "10.66.0.100", end = "10.66.0.199", lease_time = "2m" }
[dns]
domain = "vm.lan"
"#,
    );
    let monitor = Monitor::start(lab.bus.address());
    let tap = attach(&gn, &net, "vm1", &tap_opts(Some(0), Some(MAC)));
    assert!(tap.starts_with("gntap"), "{tap}");

    let opts = VmOpts {
        hostname: Some("vm1".into()),
        ..VmOpts::default()
    };
    let vm = Vm::boot_with(&lab.world, &lab.host, &tap, MAC, assets, &opts);
    let lease = vm.wait_ready(BOOT_TIMEOUT);
    let signal = monitor.expect_lease_signal("LeaseAdded", MAC, std::time::Duration::from_secs(10));
    let announced = signal.lease().expect("LeaseAdded carries a lease");
    assert_eq!(announced.mac, MAC);
    assert_eq!(
        announced.ip, lease.ip,
        "the VM's address and the signal's differ"
    );
    assert_eq!(signal.path, net);
    probe::assert_ping(&lab.world, &lab.host, &lease.ip);
    // The guest is listed under its name with the VM's MAC.
    let guests = gn
        .busctl()
        .call(&net, "org.guestnet1.Network", "ListGuests", "", &[])
        .expect("ListGuests");
    let listed = guests.to_string();
    assert!(
        listed.contains(&tap) && listed.contains(MAC) && listed.contains("vm1"),
        "{listed}"
    );
    drop(vm);
}
