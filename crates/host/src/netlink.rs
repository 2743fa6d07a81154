//! Links, addresses and routes of one network namespace, over rtnetlink.
//! A [`Netlink`] is bound to the namespace its socket was made in.

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::{Error, NetNs, Result};

/// A route: to `destination` (address, prefix length), via `gateway` and/or out of `device`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub destination: (IpAddr, u8),
    pub gateway: Option<IpAddr>,
    pub device: Option<String>,
}

impl Route {
    /// `destination dev device scope link`: the neighbour is on the link.
    pub fn on_link(destination: IpAddr, prefix: u8, device: &str) -> Route {
        Route { destination: (destination, prefix), gateway: None, device: Some(device.to_string()) }
    }

    /// `destination via gateway [dev device]`.
    pub fn via(destination: IpAddr, prefix: u8, gateway: IpAddr, device: Option<&str>) -> Route {
        Route { destination: (destination, prefix), gateway: Some(gateway), device: device.map(str::to_string) }
    }
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let what = what.into();
    move |source| Error::Netlink { what, source }
}

/// A netlink connection to one namespace's routing subsystem.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A connection to the calling thread's namespace; needs a tokio runtime.
    pub fn connect() -> Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| Error::Io("netlink socket".into(), e))?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// A connection to `ns`: the socket is made inside it, then served on this runtime.
    pub fn connect_in(ns: &NetNs) -> Result<Netlink> {
        let rt = tokio::runtime::Handle::current();
        let made = ns.run(move || {
            let _enter = rt.enter();
            rtnetlink::new_connection()
        })?;
        let (conn, handle, _) = made.map_err(|e| Error::Io("netlink socket".into(), e))?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The index of link `name`, if it exists.
    pub async fn try_index(&self, name: &str) -> Result<Option<u32>> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            Err(e) => {
                let e = nl(format!("looking up link {name}"))(e);
                if e.is_not_found() { Ok(None) } else { Err(e) }
            }
        }
    }

    /// The index of link `name`.
    pub async fn index(&self, name: &str) -> Result<u32> {
        self.try_index(name).await?.ok_or_else(|| Error::NoSuchLink(name.to_string()))
    }

    /// Every link's (index, name).
    pub async fn links(&self) -> Result<Vec<(u32, String)>> {
        let mut out = Vec::new();
        let mut links = self.handle.link().get().execute();
        while let Some(link) = links.try_next().await.map_err(nl("listing links"))? {
            let name = link.attributes.iter().find_map(|a| match a {
                rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            out.push((link.header.index, name.unwrap_or_default()));
        }
        Ok(out)
    }

    /// A veth pair: `name` here and `peer`, both here until one is moved.
    pub async fn add_veth(&self, name: &str, peer: &str) -> Result<()> {
        let msg = LinkVeth::new(name, peer).build();
        self.handle.link().add(msg).execute().await.map_err(nl(format!("adding veth {name}/{peer}")))
    }

    /// A veth pair made straight across namespaces: `name` here, `peer` in
    /// `ns`. Several times faster than making both here and moving one: a
    /// link moving namespaces waits for the kernel's network to quiesce
    /// (about 18 ms a move on our machine, against 2 ms for this).
    pub async fn add_veth_into(&self, name: &str, peer: &str, ns: &NetNs) -> Result<()> {
        use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo};
        use std::os::fd::AsRawFd;
        let file = ns.file()?;
        let mut msg = LinkVeth::new(name, peer).build();
        for attr in msg.attributes.iter_mut() {
            if let LinkAttribute::LinkInfo(infos) = attr {
                for info in infos.iter_mut() {
                    if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))) = info {
                        peer_msg.attributes.push(LinkAttribute::NetNsFd(file.as_raw_fd()));
                    }
                }
            }
        }
        let done = self.handle.link().add(msg).execute().await;
        drop(file);
        done.map_err(nl(format!("adding veth {name} with {peer} in namespace {}", ns.name())))
    }

    /// A bridge `name`.
    pub async fn add_bridge(&self, name: &str) -> Result<()> {
        let msg = LinkBridge::new(name).build();
        self.handle.link().add(msg).execute().await.map_err(nl(format!("adding bridge {name}")))
    }

    /// Moves link `name` into `ns`, renaming it to `new_name` there.
    pub async fn move_to(&self, name: &str, ns: &NetNs, new_name: &str) -> Result<()> {
        let index = self.index(name).await?;
        let file = ns.file()?;
        use std::os::fd::AsRawFd;
        let msg = LinkUnspec::new_with_index(index).setns_by_fd(file.as_raw_fd()).name(new_name).build();
        let done = self.handle.link().set(msg).execute().await;
        drop(file);
        done.map_err(nl(format!("moving {name} into namespace {}", ns.name())))
    }

    /// Attaches link `name` to bridge `bridge`.
    pub async fn set_master(&self, name: &str, bridge: &str) -> Result<()> {
        let (index, master) = (self.index(name).await?, self.index(bridge).await?);
        let msg = LinkUnspec::new_with_index(index).controller(master).build();
        self.handle.link().set(msg).execute().await.map_err(nl(format!("attaching {name} to {bridge}")))
    }

    pub async fn set_up(&self, name: &str) -> Result<()> {
        let index = self.index(name).await?;
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle.link().set(msg).execute().await.map_err(nl(format!("bringing {name} up")))
    }

    /// Deletes link `name` (a veth's peer goes with it); an error if there is none.
    pub async fn delete_link(&self, name: &str) -> Result<()> {
        let index = self.index(name).await?;
        self.handle.link().del(index).execute().await.map_err(nl(format!("deleting link {name}")))
    }

    /// Adds `ip/prefix` to link `name`; adding what is there already is fine.
    pub async fn add_address(&self, name: &str, ip: IpAddr, prefix: u8) -> Result<()> {
        let index = self.index(name).await?;
        let done = self.handle.address().add(index, ip, prefix).replace().execute().await;
        done.map_err(nl(format!("adding {ip}/{prefix} to {name}")))
    }

    /// Removes `ip` from link `name`; removing what is not there is fine.
    pub async fn delete_address(&self, name: &str, ip: IpAddr) -> Result<()> {
        use rtnetlink::packet_route::address::AddressAttribute;
        let index = self.index(name).await?;
        let mut addrs = self.handle.address().get().set_link_index_filter(index).execute();
        while let Some(a) = addrs.try_next().await.map_err(nl(format!("listing addresses of {name}")))? {
            if a.attributes.iter().any(|at| matches!(at, AddressAttribute::Address(x) if *x == ip)) {
                return self.handle.address().del(a).execute().await.map_err(nl(format!("removing {ip} from {name}")));
            }
        }
        Ok(())
    }

    /// The addresses on link `name`, with their prefix lengths.
    pub async fn addresses(&self, name: &str) -> Result<Vec<(IpAddr, u8)>> {
        use rtnetlink::packet_route::address::AddressAttribute;
        let index = self.index(name).await?;
        let mut out = Vec::new();
        let mut addrs = self.handle.address().get().set_link_index_filter(index).execute();
        while let Some(a) = addrs.try_next().await.map_err(nl(format!("listing addresses of {name}")))? {
            for attr in &a.attributes {
                if let AddressAttribute::Address(ip) = attr {
                    out.push((*ip, a.header.prefix_len));
                }
            }
        }
        Ok(out)
    }

    async fn route_message(&self, route: &Route) -> Result<rtnetlink::packet_route::route::RouteMessage> {
        let (dst, len) = route.destination;
        let bad = |e: String| Error::InvalidRoute(format!("{route:?}: {e}"));
        let mut b =
            RouteMessageBuilder::<IpAddr>::new().destination_prefix(dst, len).map_err(|e| bad(e.to_string()))?;
        if let Some(gw) = route.gateway {
            b = b.gateway(gw).map_err(|e| bad(e.to_string()))?;
        } else {
            b = b.scope(RouteScope::Link);
        }
        if let Some(dev) = &route.device {
            b = b.output_interface(self.index(dev).await?);
        }
        Ok(b.build())
    }

    /// Adds `route`, or replaces the route to the same destination.
    pub async fn add_route(&self, route: &Route) -> Result<()> {
        let msg = self.route_message(route).await?;
        let done = self.handle.route().add(msg).replace().execute().await;
        done.map_err(nl(format!("adding a route to {}/{}", route.destination.0, route.destination.1)))
    }

    /// Deletes `route`; an error if there is none.
    pub async fn delete_route(&self, route: &Route) -> Result<()> {
        let msg = self.route_message(route).await?;
        let done = self.handle.route().del(msg).execute().await;
        done.map_err(nl(format!("deleting the route to {}/{}", route.destination.0, route.destination.1)))
    }
}
