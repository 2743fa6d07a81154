//! Namespaces, veths, addresses and routes for real, in namespaces these
//! tests create and remove. Needs root; fails (never skips) without it.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kubesvc_host::{NetNs, Netlink, Route, sysctl};

static N: AtomicUsize = AtomicUsize::new(0);

/// A namespace removed by name when the test ends, however it ends.
struct Scoped(Option<NetNs>);

impl Scoped {
    fn new(tag: &str) -> Scoped {
        assert!(nix::unistd::geteuid().is_root(), "these tests need root to create network namespaces");
        let name = format!("ksvc-host-{}-{tag}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        Scoped(Some(NetNs::create(&name).unwrap()))
    }

    fn ns(&self) -> &NetNs {
        self.0.as_ref().unwrap()
    }
}

impl Drop for Scoped {
    fn drop(&mut self) {
        if let Some(ns) = self.0.take() {
            let _ = ns.delete();
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Listens in `server` on `addr`, connects from `client`, and checks a byte each way.
fn round_trip(server: &NetNs, client: &NetNs, addr: SocketAddr) {
    let listener = server.run(move || TcpListener::bind(addr)).unwrap().unwrap();
    let serve = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        s.write_all(&[b[0] + 1]).unwrap();
        peer
    });
    let got = client
        .run(move || {
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
            c.write_all(&[41]).unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).unwrap();
            b[0]
        })
        .unwrap();
    assert_eq!(got, 42);
    serve.join().unwrap();
}

#[tokio::test]
async fn a_veth_between_two_namespaces_carries_tcp() {
    let (a, b) = (Scoped::new("a"), Scoped::new("b"));
    let (na, nb) = (Netlink::connect_in(a.ns()).unwrap(), Netlink::connect_in(b.ns()).unwrap());
    na.add_veth("left", "right").await.unwrap();
    na.move_to("right", b.ns(), "eth0").await.unwrap();
    assert!(na.try_index("right").await.unwrap().is_none(), "the peer left");
    assert!(nb.try_index("eth0").await.unwrap().is_some(), "and arrived renamed");
    na.add_address("left", ip("10.99.0.1"), 30).await.unwrap();
    na.add_address("left", ip("10.99.0.1"), 30).await.unwrap();
    nb.add_address("eth0", ip("10.99.0.2"), 30).await.unwrap();
    for (n, link) in [(&na, "left"), (&na, "lo"), (&nb, "eth0"), (&nb, "lo")] {
        n.set_up(link).await.unwrap();
    }
    let addrs = nb.addresses("eth0").await.unwrap();
    assert_eq!(addrs.iter().filter(|(a, _)| a.is_ipv4()).collect::<Vec<_>>(), [&(ip("10.99.0.2"), 30)], "{addrs:?}");
    round_trip(a.ns(), b.ns(), "10.99.0.1:7001".parse().unwrap());
    // Deleting one end deletes the pair.
    na.delete_link("left").await.unwrap();
    assert!(nb.try_index("eth0").await.unwrap().is_none());
    let missing = na.delete_link("left").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
}

/// The pod wiring the agent uses: a /32 on the pod's eth0, the node's side a
/// /32 too, routes on the link both ways, a default route in the pod.
#[tokio::test]
async fn routed_point_to_point_as_for_a_pod() {
    let (node, pod) = (Scoped::new("node"), Scoped::new("pod"));
    let (nn, np) = (Netlink::connect_in(node.ns()).unwrap(), Netlink::connect_in(pod.ns()).unwrap());
    nn.add_veth_into("vethpod", "eth0", pod.ns()).await.unwrap();
    nn.add_address("vethpod", ip("10.244.1.1"), 32).await.unwrap();
    np.add_address("eth0", ip("10.244.1.5"), 32).await.unwrap();
    for (n, link) in [(&nn, "vethpod"), (&nn, "lo"), (&np, "eth0"), (&np, "lo")] {
        n.set_up(link).await.unwrap();
    }
    np.add_route(&Route::on_link(ip("10.244.1.1"), 32, "eth0")).await.unwrap();
    np.add_route(&Route::via(ip("0.0.0.0"), 0, ip("10.244.1.1"), Some("eth0"))).await.unwrap();
    nn.add_route(&Route::on_link(ip("10.244.1.5"), 32, "vethpod")).await.unwrap();
    // Replacing a route is fine; deleting one that is not there is not found.
    nn.add_route(&Route::on_link(ip("10.244.1.5"), 32, "vethpod")).await.unwrap();
    round_trip(pod.ns(), node.ns(), "10.244.1.5:7002".parse().unwrap());
    round_trip(node.ns(), pod.ns(), "10.244.1.1:7003".parse().unwrap());
    let gone = nn.delete_route(&Route::on_link(ip("10.244.9.9"), 32, "vethpod")).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
}

#[tokio::test]
async fn namespaces_by_name_and_their_sysctls() {
    let a = Scoped::new("named");
    let name = a.ns().name().to_string();
    assert!(NetNs::exists(&name));
    assert!(NetNs::list(&format!("ksvc-host-{}-named", std::process::id())).unwrap().contains(&name));
    assert!(NetNs::create(&name).is_err(), "a name is created once");
    // A namespace's own sysctls: forwarding on there, whatever the host has.
    let host = sysctl::get("net/ipv4/ip_forward").unwrap();
    a.ns().run(|| sysctl::set("net/ipv4/ip_forward", "1")).unwrap().unwrap();
    assert_eq!(a.ns().run(|| sysctl::get("net/ipv4/ip_forward")).unwrap().unwrap(), "1");
    assert_eq!(sysctl::get("net/ipv4/ip_forward").unwrap(), host, "the host's is untouched");
    // A bridge with a veth end on it.
    let n = Netlink::connect_in(a.ns()).unwrap();
    n.add_bridge("br0").await.unwrap();
    n.add_veth("v0", "v1").await.unwrap();
    n.set_master("v0", "br0").await.unwrap();
    let links: Vec<String> = n.links().await.unwrap().into_iter().map(|(_, name)| name).collect();
    assert!(links.contains(&"br0".to_string()) && links.contains(&"v1".to_string()), "{links:?}");
    let err = n.add_bridge("br0").await.unwrap_err();
    assert!(err.is_exists(), "{err}");
    let ns = a.0.clone().unwrap();
    drop(a);
    assert!(!NetNs::exists(ns.name()), "deleted by name");
    assert!(matches!(NetNs::open(ns.name()), Err(kubesvc_host::Error::NoSuchNamespace(_))));
}
