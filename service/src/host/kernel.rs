//! Everything guestnetd asks of the kernel's links, addresses and routes,
//! over rtnetlink. This is the only module that uses the rtnetlink crate
//! (pinned, since it breaks its API between minor releases).

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, IpVersion};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot open an rtnetlink socket: {0}")]
    Connect(#[from] std::io::Error),
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("no interface named {0:?}")]
    NoSuchLink(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl KernelError {
    /// The errno the kernel answered with, when it refused a request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Netlink { source, .. } => match source.as_ref() {
                rtnetlink::Error::NetlinkError(m) => m.code.map(|c| c.get().abs()),
                _ => None,
            },
            KernelError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    fn from_io(what: impl Into<String>, source: std::io::Error) -> KernelError {
        KernelError::Io {
            what: what.into(),
            source,
        }
    }
}

type Result<T> = std::result::Result<T, KernelError>;

mod link_dump;

fn ctx(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> KernelError {
    let what = what.into();
    move |source| KernelError::Netlink {
        what,
        source: Box::new(source),
    }
}

/// One link as the kernel reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub master: Option<u32>,
    pub alias: Option<String>,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub addresses: Vec<Ipv4Net>,
}

/// One IPv4 route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub metric: Option<u32>,
    pub protocol: u8,
    pub scope: u8,
    pub pref_source: Option<Ipv4Addr>,
}

impl Route {
    /// Routes the kernel adds by itself for an address (the subnet route);
    /// they come and go with the address and are never moved by hand.
    pub fn is_kernel(&self) -> bool {
        self.protocol == u8::from(RouteProtocol::Kernel)
    }
}

/// The host's links and IPv4 routes at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub links: Vec<Link>,
    pub routes: Vec<Route>,
}

impl Snapshot {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    pub fn link_by_index(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }

    pub fn routes_via(&self, index: u32) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter(move |r| r.oif == Some(index))
    }
}

#[derive(Clone)]
pub struct Kernel {
    handle: Handle,
}

impl Kernel {
    /// Opens the rtnetlink socket; must run inside a tokio runtime.
    pub fn connect() -> Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    pub async fn snapshot(&self) -> Result<Snapshot> {
        let mut links = self.links().await?;
        for (index, net) in self.addresses().await? {
            if let Some(l) = links.iter_mut().find(|l| l.index == index) {
                l.addresses.push(net);
            }
        }
        let routes = self.routes().await?;
        Ok(Snapshot { links, routes })
    }

    async fn links(&self) -> Result<Vec<Link>> {
        tokio::task::spawn_blocking(link_dump::dump)
            .await
            .map_err(|e| KernelError::from_io("listing links", std::io::Error::other(e)))?
            .map_err(|e| KernelError::from_io("listing links", e))
    }

    async fn addresses(&self) -> Result<Vec<(u32, Ipv4Net)>> {
        let mut stream = self.handle.address().get().execute();
        let mut out = Vec::new();
        while let Some(msg) = stream.try_next().await.map_err(ctx("listing addresses"))? {
            if let Some(net) = parse_address(&msg) {
                out.push((msg.header.index, net));
            }
        }
        Ok(out)
    }

    async fn routes(&self) -> Result<Vec<Route>> {
        let mut stream = self.handle.route().get(IpVersion::V4).execute();
        let mut out = Vec::new();
        while let Some(msg) = stream.try_next().await.map_err(ctx("listing routes"))? {
            if let Some(r) = parse_route(&msg) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// One link by name, in one request (its `addresses` are left empty:
    /// callers want its index, MTU or master, not a dump of the host).
    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        let what = format!("looking up {name}");
        let owned = name.to_owned();
        tokio::task::spawn_blocking(move || link_dump::by_name(&owned))
            .await
            .map_err(|e| KernelError::from_io(what.clone(), std::io::Error::other(e)))?
            .map_err(|e| KernelError::from_io(what, e))
    }

    /// Creates a bridge, marked with `alias` so that it is known as ours,
    /// under ifindex `index` when given.
    pub async fn create_bridge(
        &self,
        name: &str,
        index: Option<u32>,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
        alias: &str,
    ) -> Result<u32> {
        let mut req = self.handle.link().add().bridge(name.to_owned());
        let msg = req.message_mut();
        // The kernel takes an ifindex given at creation (and refuses one in
        // use): a bridge made under an index recorded beforehand is known
        // as ours before it carries its alias.
        if let Some(index) = index {
            msg.header.index = index;
        }
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        req.execute()
            .await
            .map_err(ctx(format!("creating bridge {name}")))?;
        let link = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| KernelError::NoSuchLink(name.to_owned()))?;
        // The kernel ignores an alias given at creation; it takes one set after.
        let mut set = self.handle.link().set(link.index);
        set.message_mut()
            .attributes
            .push(LinkAttribute::IfAlias(alias.to_owned()));
        if let Err(e) = set.execute().await {
            let _ = self.delete_link(link.index, name).await;
            return Err(ctx(format!("marking bridge {name} as guestnet's"))(e));
        }
        Ok(link.index)
    }

    /// Creates a veth pair: `host` here, `peer` (with `peer_mac`) made
    /// directly inside the network namespace open at `peer_netns`, so the
    /// peer never exists under a temporary name.
    pub async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        peer_netns: RawFd,
        peer_mac: [u8; 6],
        mtu: Option<u32>,
    ) -> Result<u32> {
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_owned()));
        peer_msg.attributes.push(LinkAttribute::NetNsFd(peer_netns));
        peer_msg
            .attributes
            .push(LinkAttribute::Address(peer_mac.to_vec()));
        if let Some(mtu) = mtu {
            peer_msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let mut req = self.handle.link().add();
        let msg = req.message_mut();
        msg.attributes.push(LinkAttribute::IfName(host.to_owned()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        req.execute()
            .await
            .map_err(ctx(format!("creating veth {host} with peer {peer}")))?;
        let link = self
            .link_by_name(host)
            .await?
            .ok_or_else(|| KernelError::NoSuchLink(host.to_owned()))?;
        Ok(link.index)
    }

    pub async fn set_mtu(&self, index: u32, name: &str, mtu: u32) -> Result<()> {
        self.handle
            .link()
            .set(index)
            .mtu(mtu)
            .execute()
            .await
            .map_err(ctx(format!("setting the MTU of {name}")))
    }

    /// Marks a link with an alias (guestnet's bridges carry `guestnet:NAME`).
    pub async fn set_alias(&self, index: u32, name: &str, alias: &str) -> Result<()> {
        let mut set = self.handle.link().set(index);
        set.message_mut()
            .attributes
            .push(LinkAttribute::IfAlias(alias.to_owned()));
        set.execute()
            .await
            .map_err(ctx(format!("marking {name} as guestnet's")))
    }

    pub async fn delete_link(&self, index: u32, name: &str) -> Result<()> {
        let handle = self.handle.clone();
        handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(ctx(format!("deleting {name}")))
    }

    pub async fn set_up(&self, index: u32, name: &str) -> Result<()> {
        self.handle
            .link()
            .set(index)
            .up()
            .execute()
            .await
            .map_err(ctx(format!("bringing {name} up")))
    }

    /// Sets a bridge port's isolation: isolated ports of one bridge
    /// exchange no frames with each other, only with the bridge itself
    /// (the host) and ports that are not isolated (an uplink).
    pub async fn set_port_isolated(&self, index: u32, name: &str, isolated: bool) -> Result<()> {
        use futures::StreamExt;
        use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
        use netlink_packet_route::RouteNetlinkMessage;
        // A port's bridge settings change through RTM_NEWLINK on the
        // existing link (as `ip link set X type bridge_slave` does): the
        // kernel ignores IFLA_LINKINFO in RTM_SETLINK, which rtnetlink's
        // `link().set()` sends.
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::Isolated(
                isolated,
            )])),
        ]));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewLink(msg));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        let what = || format!("setting the isolation of bridge port {name}");
        let mut handle = self.handle.clone();
        let mut response = handle.request(req).map_err(ctx(what()))?;
        while let Some(message) = response.next().await {
            if let NetlinkPayload::Error(e) = message.payload {
                if let Some(code) = e.code {
                    return Err(KernelError::from_io(
                        what(),
                        std::io::Error::from_raw_os_error(-code.get()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Makes `index` a port of `master`, or releases it with `None`.
    pub async fn set_master(&self, index: u32, name: &str, master: Option<u32>) -> Result<()> {
        let req = self.handle.link().set(index);
        let req = match master {
            Some(m) => req.controller(m),
            None => req.nocontroller(),
        };
        req.execute()
            .await
            .map_err(ctx(format!("changing the bridge of {name}")))
    }

    pub async fn add_address(&self, index: u32, name: &str, net: Ipv4Net) -> Result<()> {
        self.handle
            .address()
            .add(index, IpAddr::V4(net.addr()), net.prefix_len())
            .execute()
            .await
            .map_err(ctx(format!("adding {net} to {name}")))
    }

    pub async fn delete_address(&self, index: u32, name: &str, net: Ipv4Net) -> Result<()> {
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(ctx(format!("listing addresses of {name}")))?
        {
            if parse_address(&msg) == Some(net) {
                return self
                    .handle
                    .address()
                    .del(msg)
                    .execute()
                    .await
                    .map_err(ctx(format!("removing {net} from {name}")));
            }
        }
        Ok(())
    }

    /// Adds `route` with its output interface replaced by `oif`.
    pub async fn add_route(&self, route: &Route, oif: u32) -> Result<()> {
        let mut req = self
            .handle
            .route()
            .add()
            .v4()
            .destination_prefix(route.destination.addr(), route.destination.prefix_len())
            .output_interface(oif)
            .protocol(RouteProtocol::from(route.protocol))
            .scope(RouteScope::from(route.scope));
        if let Some(gw) = route.gateway {
            req = req.gateway(gw);
        }
        if let Some(metric) = route.metric {
            req = req.priority(metric);
        }
        if let Some(src) = route.pref_source {
            req = req.pref_source(src);
        }
        req.execute()
            .await
            .map_err(ctx(format!("adding route to {}", route.destination)))
    }

    pub async fn delete_route(&self, route: &Route) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = netlink_packet_route::AddressFamily::Inet;
        msg.header.destination_prefix_length = route.destination.prefix_len();
        msg.header.table = 254;
        msg.header.protocol = RouteProtocol::from(route.protocol);
        msg.header.scope = RouteScope::from(route.scope);
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                route.destination.addr(),
            )));
        if let Some(gw) = route.gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        }
        if let Some(oif) = route.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(metric) = route.metric {
            msg.attributes.push(RouteAttribute::Priority(metric));
        }
        self.handle
            .route()
            .del(msg)
            .execute()
            .await
            .map_err(ctx(format!("removing route to {}", route.destination)))
    }
}

fn parse_address(msg: &AddressMessage) -> Option<Ipv4Net> {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on
    // point-to-point links, so prefer LOCAL.
    let mut found = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(IpAddr::V4(a)) => found = Some(*a),
            AddressAttribute::Address(IpAddr::V4(a)) if found.is_none() => found = Some(*a),
            _ => {}
        }
    }
    found.and_then(|a| Ipv4Net::new(a, msg.header.prefix_len).ok())
}

fn parse_route(msg: &RouteMessage) -> Option<Route> {
    let mut table = u32::from(msg.header.table);
    let mut dest = Ipv4Addr::UNSPECIFIED;
    let mut route = Route {
        destination: Ipv4Net::default(),
        gateway: None,
        oif: None,
        metric: None,
        protocol: u8::from(msg.header.protocol),
        scope: u8::from(msg.header.scope),
        pref_source: None,
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dest = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => route.gateway = Some(*a),
            RouteAttribute::Oif(i) => route.oif = Some(*i),
            RouteAttribute::Priority(p) => route.metric = Some(*p),
            RouteAttribute::PrefSource(RouteAddress::Inet(a)) => route.pref_source = Some(*a),
            _ => {}
        }
    }
    if table != 254 || msg.header.kind != RouteType::Unicast {
        return None;
    }
    route.destination = Ipv4Net::new(dest, msg.header.destination_prefix_length).ok()?;
    Some(route)
}

/// A change of one link, as the kernel announces it.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// Created or changed: its state now.
    Changed(Link),
    Removed(Link),
    /// The socket overflowed and announcements were lost: every link as it
    /// is now, read after the loss, to compare with what was known.
    Resync(Vec<Link>),
}

/// Room for a burst of announcements (a thousand ports made in a row)
/// while the reader is busy; past it the kernel drops them (ENOBUFS) and
/// the watcher reads every link again.
const WATCH_BUFFER: usize = 8 << 20;

/// Subscribes to the kernel's link announcements (RTNLGRP_LINK): every
/// link created, changed or deleted, pushed by the kernel, never polled.
/// Read on a socket of its own and parsed by [`link_dump`], like the dumps.
pub fn watch_links() -> Result<tokio::sync::mpsc::UnboundedReceiver<LinkEvent>> {
    use netlink_sys::{AsyncSocket, AsyncSocketExt, TokioSocket};
    let mut socket = TokioSocket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
    let groups = netlink_sys::SocketAddr::new(0, rtnetlink::constants::RTMGRP_LINK);
    socket.socket_mut().bind(&groups)?;
    crate::host::socket_buffers::grow(socket.socket_ref(), WATCH_BUFFER, false);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            buf.clear();
            let events = match socket.recv(&mut buf).await {
                Ok(()) => link_dump::announcements(&buf).unwrap_or_else(|e| {
                    tracing::warn!("a link announcement: {e}");
                    Vec::new()
                }),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    match tokio::task::spawn_blocking(link_dump::dump).await {
                        Ok(Ok(links)) => {
                            tracing::info!("link announcements were lost; read every link again");
                            vec![LinkEvent::Resync(links)]
                        }
                        _ => {
                            tracing::error!(
                                "link announcements were lost and reading the links failed"
                            );
                            Vec::new()
                        }
                    }
                }
                Err(e) => {
                    tracing::error!("link announcements stopped: {e}");
                    return;
                }
            };
            for event in events {
                if tx.send(event).is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}
