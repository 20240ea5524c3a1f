//! A real VM as a guest: `qemu-system-x86_64` booting a Debian kernel and a
//! small initramfs of the harness's own on a tap device in one of the test's
//! namespaces.
//!
//! The assets ([`VmAssets`]) are assembled at test time by
//! `scripts/vm-assets.sh` (Debian's kernel and busybox-static fetched with
//! `apt-get download` and unpacked with `dpkg -x`, nothing installed) and
//! cached under `target/vm-assets/`, keyed by the package versions.
//!
//! The guest's init loads virtio-net, brings `eth0` up and runs busybox's
//! udhcpc in the background (renewing its lease) with a script that sets the
//! address and default route. It reports on its serial console, which
//! [`Vm`] keeps in a file:
//!
//! ```text
//! GUESTNET-VM-INIT kernel=6.1.0-56-amd64
//! GUESTNET-VM-LINK eth0 52:54:00:12:34:56
//! GUESTNET-VM-READY 10.99.0.158/24 router=10.99.0.1 dns=10.99.0.1 lease=120 server=10.99.0.1
//! GUESTNET-VM-RENEW ...   (each renewal)
//! ```
//!
//! then stays up, answering pings, until the [`Vm`] is dropped.
//!
//! qemu runs as `ip netns exec NS qemu-system-x86_64 ...`, so it opens the
//! tap inside the test's namespace. `-nodefaults` means it has no other
//! network device (no user-mode networking), no monitor and no display.
//!
//! Acceleration: KVM when `/dev/kvm` can create a VM, else TCG (software
//! emulation). Some machines (nested virtualisation) have a `/dev/kvm` that
//! creates VMs which then hang in the kernel's early boot: when a KVM guest
//! has not printed `GUESTNET-VM-INIT` within [`KVM_INIT_TIMEOUT`], it is
//! killed and booted again under TCG, and KVM is not tried again by this
//! process, nor by another before the machine reboots (a marker file beside
//! the assets). `GUESTNET_VM_ACCEL=kvm|tcg` forces one (no fallback).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::world::World;

/// The emulator.
pub const QEMU: &str = "qemu-system-x86_64";

/// The guest's console lines.
pub const INIT_MARK: &str = "GUESTNET-VM-INIT";
pub const LINK_MARK: &str = "GUESTNET-VM-LINK";
pub const READY_MARK: &str = "GUESTNET-VM-READY";
pub const RENEW_MARK: &str = "GUESTNET-VM-RENEW";
pub const ERROR_MARK: &str = "GUESTNET-VM-ERROR";

/// How long a guest may take from qemu's start to its first DHCP lease.
/// Generous: under TCG on this project's 2-core machines the guest has its
/// lease 7-11 s after qemu starts when the machine is idle, and about 32 s
/// with both cores kept busy by something else (the tests run in parallel).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

/// How long a KVM guest may take to reach its init before KVM is taken as
/// broken here and the guest is booted again under TCG.
pub const KVM_INIT_TIMEOUT: Duration = Duration::from_secs(20);

/// How qemu runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// The `-accel` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The kernel and initramfs of the guest.
#[derive(Clone, Debug)]
pub struct VmAssets {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The cache key: kernel and busybox-static packages and versions, and
    /// a hash of the script that built them.
    pub key: String,
}

impl VmAssets {
    /// The assets, built by `scripts/vm-assets.sh` the first time (about
    /// 11-20 s, 72 MB fetched) and found in the cache afterwards (about 1 s,
    /// mostly `apt-cache`); once per test process. Panics with the script's
    /// output when they cannot be made.
    pub fn get() -> &'static VmAssets {
        static ASSETS: OnceLock<VmAssets> = OnceLock::new();
        ASSETS.get_or_init(|| VmAssets::build_in(&assets_root()).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Runs `scripts/vm-assets.sh OUTROOT` and reads what it printed.
    pub fn build_in(outroot: &Path) -> Result<VmAssets, String> {
        let script = repo_dir().join("scripts/vm-assets.sh");
        let args = ["sh".as_ref(), script.as_os_str(), outroot.as_os_str()];
        let out = cmd::run(&args);
        if !out.status.success() {
            return Err(format!(
                "cannot assemble the VM's kernel and initramfs\n{}",
                cmd::failure(&args, &out)
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| format!("{} printed no `{name}=`:\n{text}", script.display()))
        };
        let assets = VmAssets {
            kernel: PathBuf::from(field("kernel")?),
            initrd: PathBuf::from(field("initrd")?),
            key: field("key")?,
        };
        for p in [&assets.kernel, &assets.initrd] {
            if !p.is_file() {
                return Err(format!(
                    "{} named {}, which is no file",
                    script.display(),
                    p.display()
                ));
            }
        }
        Ok(assets)
    }
}

/// The repository's top directory.
fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where the assets are cached: `$GUESTNET_VM_ASSETS`, else
/// `$CARGO_TARGET_DIR/vm-assets`, else `target/vm-assets` of the repository.
pub fn assets_root() -> PathBuf {
    if let Some(d) = std::env::var_os("GUESTNET_VM_ASSETS") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join("target"));
    target.join("vm-assets")
}

/// What this machine can run the guest with.
#[derive(Clone, Debug)]
pub struct Accels {
    /// Ok, or why KVM cannot be used.
    pub kvm: Result<(), String>,
    /// Ok, or why TCG cannot be used.
    pub tcg: Result<(), String>,
    /// `GUESTNET_VM_ACCEL`, if set.
    pub forced: Option<Accel>,
}

impl Accels {
    /// The accelerator the first boot tries, or why none can be used.
    pub fn first(&self) -> Result<Accel, String> {
        if let Some(a) = self.forced {
            let r = match a {
                Accel::Kvm => &self.kvm,
                Accel::Tcg => &self.tcg,
            };
            return r
                .clone()
                .map(|()| a)
                .map_err(|e| format!("GUESTNET_VM_ACCEL={} but {e}", a.as_str()));
        }
        if self.kvm.is_ok() && !kvm_known_broken() {
            return Ok(Accel::Kvm);
        }
        if self.tcg.is_ok() {
            return Ok(Accel::Tcg);
        }
        Err(format!(
            "neither KVM ({}) nor TCG ({}) can run a guest",
            self.kvm.as_ref().err().map_or("hangs here", String::as_str),
            self.tcg.as_ref().err().map_or("?", String::as_str),
        ))
    }
}

/// Probes KVM and TCG once per process.
pub fn accels() -> &'static Accels {
    static ACCELS: OnceLock<Accels> = OnceLock::new();
    ACCELS.get_or_init(|| {
        let forced = match std::env::var("GUESTNET_VM_ACCEL").as_deref() {
            Ok("kvm") => Some(Accel::Kvm),
            Ok("tcg") => Some(Accel::Tcg),
            Ok("") | Err(_) => None,
            Ok(other) => panic!("GUESTNET_VM_ACCEL={other:?}: use kvm or tcg"),
        };
        let listed = Command::new(QEMU)
            .args(["-accel", "help"])
            .stdin(Stdio::null())
            .output();
        let (tcg, qemu_kvm) = match listed {
            Err(e) => {
                let why =
                    format!("cannot run {QEMU} ({e}; scripts/deps.sh installs qemu-system-x86)");
                (Err(why.clone()), Err(why))
            }
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let has = |a: &str| text.lines().any(|l| l.trim() == a);
                let tcg = if has("tcg") {
                    Ok(())
                } else {
                    Err(format!("`{QEMU} -accel help` lists no tcg"))
                };
                let kvm = if has("kvm") {
                    Ok(())
                } else {
                    Err(format!("`{QEMU} -accel help` lists no kvm"))
                };
                (tcg, kvm)
            }
        };
        let kvm = qemu_kvm.and_then(|()| kvm_probe());
        Accels { kvm, tcg, forced }
    })
}

/// Whether `/dev/kvm` opens and makes a VM (KVM_GET_API_VERSION,
/// KVM_CREATE_VM). A machine may pass this and still hang the guest: see
/// the module's documentation.
fn kvm_probe() -> Result<(), String> {
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
    // SAFETY: open(2) of a NUL-terminated path; the fd is closed below.
    let fd = unsafe { libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!("/dev/kvm: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: these two KVM ioctls take no argument; fd is ours.
    let (version, vm) = unsafe {
        let v = libc::ioctl(fd, KVM_GET_API_VERSION as _, 0);
        let vm = if v == 12 {
            libc::ioctl(fd, KVM_CREATE_VM as _, 0)
        } else {
            -1
        };
        (v, vm)
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing fds this function opened (vm only when it is one).
    unsafe {
        if vm >= 0 {
            libc::close(vm);
        }
        libc::close(fd);
    }
    if version != 12 {
        return Err(format!("/dev/kvm: API version {version}, not 12"));
    }
    if vm < 0 {
        return Err(format!("/dev/kvm: KVM_CREATE_VM: {err}"));
    }
    Ok(())
}

static KVM_BROKEN: AtomicBool = AtomicBool::new(false);

/// The marker file saying KVM hung a guest since this boot of the machine.
fn kvm_broken_marker() -> PathBuf {
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    assets_root().join(format!("kvm-hangs.{}", boot_id.trim()))
}

fn kvm_known_broken() -> bool {
    KVM_BROKEN.load(Ordering::SeqCst) || kvm_broken_marker().exists()
}

fn mark_kvm_broken() {
    KVM_BROKEN.store(true, Ordering::SeqCst);
    let marker = kvm_broken_marker();
    let _ = fs::create_dir_all(marker.parent().unwrap_or(Path::new(".")));
    let _ = fs::write(
        &marker,
        "a KVM guest did not reach its init in time: TCG only\n",
    );
}

/// True when a VM test may run: the machine can run a guest under KVM or
/// TCG. Otherwise under `CI=true` it panics, and elsewhere it prints a loud
/// SKIPPED line with the reason and returns false. (Root is checked apart:
/// [`crate::require_root`].)
pub fn require_vm() -> bool {
    let why = match accels().first() {
        Ok(_) => return true,
        Err(why) => why,
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("this test boots a VM, and {why}; CI=true: refusing to skip");
    }
    crate::announce_skip(&format!("cannot boot a VM: {why}"));
    false
}

/// `vm_or_skip!()` at the top of a VM test (after `root_or_skip!()`):
/// returns from it when [`require_vm`] says no VM can run here.
#[macro_export]
macro_rules! vm_or_skip {
    () => {
        if !$crate::vm::require_vm() {
            return;
        }
    };
}

/// How to boot a guest beyond its tap and MAC.
#[derive(Clone, Debug)]
pub struct VmOpts {
    /// Guest memory in MiB (`-m`).
    pub mem_mb: u32,
    /// The guest's hostname, which udhcpc sends as DHCP option 12.
    pub hostname: Option<String>,
    /// How long boot waits for the guest's init (`GUESTNET-VM-INIT`).
    pub init_timeout: Duration,
}

impl Default for VmOpts {
    fn default() -> Self {
        VmOpts {
            mem_mb: 256,
            hostname: None,
            init_timeout: BOOT_TIMEOUT,
        }
    }
}

/// What the guest's udhcpc script printed for a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmLease {
    pub ip: String,
    pub prefix: u8,
    /// The first router offered.
    pub router: Option<String>,
    pub dns: Vec<String>,
    pub lease_secs: Option<u64>,
    /// The DHCP server's identifier.
    pub server: Option<String>,
    /// The whole console line.
    pub line: String,
}

impl VmLease {
    /// Parses `GUESTNET-VM-READY IP/PREFIX key=value ...` (or RENEW).
    pub fn parse(line: &str) -> Option<VmLease> {
        let mut words = line.split_whitespace();
        let mark = words.next()?;
        if mark != READY_MARK && mark != RENEW_MARK {
            return None;
        }
        let (ip, prefix) = words.next()?.split_once('/')?;
        let mut lease = VmLease {
            ip: ip.to_owned(),
            prefix: prefix.parse().ok()?,
            router: None,
            dns: Vec::new(),
            lease_secs: None,
            server: None,
            line: line.to_owned(),
        };
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                continue;
            };
            let v = (!v.is_empty()).then(|| v.to_owned());
            match k {
                "router" => lease.router = v,
                "dns" => {
                    lease.dns = v
                        .map(|v| v.split(',').map(str::to_owned).collect())
                        .unwrap_or_default()
                }
                "lease" => lease.lease_secs = v.and_then(|v| v.parse().ok()),
                "server" => lease.server = v,
                _ => {}
            }
        }
        Some(lease)
    }
}

/// A running guest. Dropping it kills qemu (and its process group).
pub struct Vm {
    child: Mutex<Option<Child>>,
    accel: Accel,
    ns: String,
    tap: String,
    mac: String,
    started: Instant,
    /// From qemu's start to the guest's `GUESTNET-VM-INIT`.
    init_after: Duration,
    /// How qemu ended when it exited before the guest's init.
    exited_early: Option<std::process::ExitStatus>,
    console: PathBuf,
    stderr: PathBuf,
    command: String,
    // Last, so it goes after qemu is dead.
    dir: tempfile::TempDir,
}

impl Vm {
    /// Boots a guest with `mac` on the existing tap `tap` of `ns` (a
    /// namespace of `world`), with the default [`VmOpts`]. Returns once its
    /// init runs; its lease comes later ([`Vm::wait_ready`]).
    pub fn boot(world: &World, ns: &str, tap: &str, mac: &str, assets: &VmAssets) -> Vm {
        Self::boot_with(world, ns, tap, mac, assets, &VmOpts::default())
    }

    /// [`Vm::boot`] with options.
    pub fn boot_with(
        world: &World,
        ns: &str,
        tap: &str,
        mac: &str,
        assets: &VmAssets,
        opts: &VmOpts,
    ) -> Vm {
        assert!(
            world.owns(ns),
            "a VM must run in one of the test's own namespaces, not {ns:?}"
        );
        assert!(
            world.has_link(ns, tap),
            "no link {tap:?} in {ns}: the tap must exist before the VM boots"
        );
        assert!(
            valid_mac(mac),
            "{mac:?} is no MAC address (aa:bb:cc:dd:ee:ff)"
        );
        if let Some(h) = &opts.hostname {
            assert!(
                !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "hostname {h:?}: use letters, digits and -"
            );
        }
        let accel = accels()
            .first()
            .unwrap_or_else(|e| panic!("cannot boot a VM: {e}"));
        let forced = accels().forced.is_some();
        if accel == Accel::Kvm && !forced {
            let timeout = KVM_INIT_TIMEOUT.min(opts.init_timeout);
            match Self::start(ns, tap, mac, assets, opts, Accel::Kvm, timeout) {
                Ok(vm) => return vm,
                Err((vm, why)) => {
                    let stderr = cmd::tail(&vm.stderr, 20);
                    // A hang, or qemu's own complaint about KVM: KVM is at
                    // fault. Anything else (the tap, the assets) would fail
                    // under TCG as well: say so now.
                    let hung = vm.exited_early.is_none();
                    if !hung && !stderr.to_ascii_lowercase().contains("kvm") {
                        vm.fail(&format!("the guest printed no {INIT_MARK}: {why}"));
                    }
                    eprintln!(
                        "note: KVM: the guest printed no {INIT_MARK} ({why}); KVM is taken \
                         as broken here: booting under TCG\n\
                         --- console ---\n{}--- qemu stderr ---\n{stderr}",
                        cmd::tail(&vm.console, 20),
                    );
                    drop(vm);
                    mark_kvm_broken();
                }
            }
            return Self::start(ns, tap, mac, assets, opts, Accel::Tcg, opts.init_timeout)
                .unwrap_or_else(|(vm, why)| {
                    vm.fail(&format!("the guest printed no {INIT_MARK}: {why}"))
                });
        }
        Self::start(ns, tap, mac, assets, opts, accel, opts.init_timeout).unwrap_or_else(
            |(vm, why)| vm.fail(&format!("the guest printed no {INIT_MARK}: {why}")),
        )
    }

    /// Starts qemu and waits up to `timeout` for the guest's init: Err with
    /// the (killed) VM when it does not come.
    fn start(
        ns: &str,
        tap: &str,
        mac: &str,
        assets: &VmAssets,
        opts: &VmOpts,
        accel: Accel,
        timeout: Duration,
    ) -> Result<Vm, (Box<Vm>, String)> {
        let dir = tempfile::Builder::new()
            .prefix("gnt-vm-")
            .tempdir()
            .expect("temp dir for the VM");
        let console = dir.path().join("console.log");
        let stderr = dir.path().join("qemu.stderr");
        let mut append = "console=ttyS0 quiet panic=-1".to_owned();
        if let Some(h) = &opts.hostname {
            append.push_str(&format!(" guestnet.hostname={h}"));
        }
        let mut args: Vec<String> = ["ip", "netns", "exec", ns, QEMU]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(
            [
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-accel",
                accel.as_str(),
            ]
            .map(String::from),
        );
        if accel == Accel::Kvm {
            args.extend(["-cpu", "host"].map(String::from));
        }
        args.extend([
            "-m".into(),
            opts.mem_mb.to_string(),
            "-smp".into(),
            "1".into(),
            "-serial".into(),
            format!("file:{}", console.display()),
            "-kernel".into(),
            assets.kernel.display().to_string(),
            "-initrd".into(),
            assets.initrd.display().to_string(),
            "-append".into(),
            append,
            "-netdev".into(),
            format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            "-device".into(),
            format!("virtio-net-pci,netdev=n0,mac={mac},romfile="),
            "-no-reboot".into(),
        ]);
        let errf = fs::File::create(&stderr).expect("create qemu's stderr file");
        let mut command = Command::new(&args[0]);
        command
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(errf.try_clone().expect("dup"))
            .stderr(errf)
            .process_group(0);
        // SAFETY: prctl(2) only, async-signal-safe, between fork and exec:
        // qemu dies with the thread that started it, should this test
        // process be killed before Drop runs. (`ip netns exec` execs qemu;
        // the death signal survives exec for a non-setuid program.)
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let started = Instant::now();
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmd::show(&args)));
        let mut vm = Vm {
            child: Mutex::new(Some(child)),
            accel,
            ns: ns.to_owned(),
            tap: tap.to_owned(),
            mac: mac.to_owned(),
            started,
            init_after: Duration::ZERO,
            exited_early: None,
            console,
            stderr,
            command: cmd::show(&args),
            dir,
        };
        match vm.poll_line(INIT_MARK, timeout) {
            Ok(_) => {
                vm.init_after = started.elapsed();
                Ok(vm)
            }
            Err(why) => {
                vm.exited_early = vm.exited();
                vm.kill();
                Err((Box::new(vm), why))
            }
        }
    }

    /// Waits until a console line contains `needle` and returns the first
    /// such line. Panics (with the console and qemu's stderr) when qemu
    /// exits or `timeout` passes first.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> String {
        self.poll_line(needle, timeout)
            .unwrap_or_else(|why| self.fail(&format!("waiting for a line with {needle:?}: {why}")))
    }

    fn poll_line(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.console().lines().find(|l| l.contains(needle)) {
                return Ok(l.trim_end_matches('\r').to_owned());
            }
            if let Some(status) = self.exited() {
                // One last look: it may have printed the line and then died.
                if let Some(l) = self.console().lines().find(|l| l.contains(needle)) {
                    return Ok(l.trim_end_matches('\r').to_owned());
                }
                return Err(format!("qemu exited ({status})"));
            }
            if Instant::now() >= deadline {
                return Err(format!("not within {} s", timeout.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the guest's first lease (`GUESTNET-VM-READY`) and returns
    /// what its udhcpc script printed. Timeout counts from now; the usual
    /// one is [`BOOT_TIMEOUT`].
    pub fn wait_ready(&self, timeout: Duration) -> VmLease {
        let line = self.wait_for_line(READY_MARK, timeout);
        let line = &line[line.find(READY_MARK).unwrap_or(0)..];
        VmLease::parse(line).unwrap_or_else(|| self.fail(&format!("cannot parse {line:?}")))
    }

    /// Everything on the guest's serial console so far.
    pub fn console(&self) -> String {
        fs::read(&self.console)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Every lease the guest reported so far: its READY line, then one
    /// RENEW line per renewal.
    pub fn leases(&self) -> Vec<VmLease> {
        self.console()
            .lines()
            .filter_map(|l| {
                let at = l.find("GUESTNET-VM-")?;
                VmLease::parse(l[at..].trim_end_matches('\r'))
            })
            .collect()
    }

    /// The exit status if qemu has exited.
    fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// True while qemu runs.
    pub fn is_running(&self) -> bool {
        self.pid().is_some() && self.exited().is_none()
    }

    /// Kills qemu now (SIGKILL to its process group) and reaps it.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = child.take() {
            cmd::kill_group(&mut c);
        }
    }

    /// qemu's pid (`ip netns exec` execs it), while it runs.
    pub fn pid(&self) -> Option<u32> {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.as_ref().map(Child::id)
    }

    /// The accelerator this guest runs under.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The namespace qemu runs in.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The tap it is attached to.
    pub fn tap(&self) -> &str {
        &self.tap
    }

    /// The guest's MAC address.
    pub fn mac(&self) -> &str {
        &self.mac
    }

    /// When qemu was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// How long the guest took from qemu's start to its init.
    pub fn init_after(&self) -> Duration {
        self.init_after
    }

    /// The qemu command line, for messages.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The VM's temporary directory (console log, qemu's stderr).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Panics with `what`, the qemu command, the console and qemu's stderr.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "VM ({} on {} in {}, mac {}, {} s after start): {what}\ncommand: {}\n\
             --- console (last 40 lines) ---\n{}--- qemu stderr ---\n{}",
            self.accel.as_str(),
            self.tap,
            self.ns,
            self.mac,
            self.started.elapsed().as_secs(),
            self.command,
            cmd::tail(&self.console, 40),
            cmd::tail(&self.stderr, 20),
        )
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_ready_line() {
        let l = VmLease::parse(
            "GUESTNET-VM-READY 10.99.0.158/24 router=10.99.0.1 dns=10.99.0.1,10.99.0.2 lease=120 server=10.99.0.1",
        )
        .unwrap();
        assert_eq!(l.ip, "10.99.0.158");
        assert_eq!(l.prefix, 24);
        assert_eq!(l.router.as_deref(), Some("10.99.0.1"));
        assert_eq!(l.dns, ["10.99.0.1", "10.99.0.2"]);
        assert_eq!(l.lease_secs, Some(120));
        assert_eq!(l.server.as_deref(), Some("10.99.0.1"));
    }

    #[test]
    fn parses_a_lease_without_router_or_dns() {
        let l =
            VmLease::parse("GUESTNET-VM-RENEW 10.0.0.5/16 router= dns= lease=60 server=10.0.0.1")
                .unwrap();
        assert_eq!((l.ip.as_str(), l.prefix), ("10.0.0.5", 16));
        assert_eq!(l.router, None);
        assert!(l.dns.is_empty());
        assert!(VmLease::parse("GUESTNET-VM-LINK eth0 52:54:00:00:00:01").is_none());
    }

    #[test]
    fn checks_macs() {
        assert!(valid_mac("52:54:00:12:34:56"));
        assert!(!valid_mac("52:54:00:12:34"));
        assert!(!valid_mac("52:54:00:12:34:5g"));
    }
}
