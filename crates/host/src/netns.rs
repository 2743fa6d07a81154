//! Named network namespaces, kept as `ip netns` keeps them: a file under
//! `/run/netns/<name>` that a bind mount of the namespace holds open.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::{Error, Result, sys};

/// Where named namespaces live (iproute2's `NETNS_RUN_DIR`).
pub const RUN_DIR: &str = "/run/netns";

/// A named network namespace.
#[derive(Debug, Clone)]
pub struct NetNs {
    name: String,
    path: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Io(path.to_path_buf(), e)
}

/// Makes the run directory a shared mount of its own, as iproute2 does:
/// namespaces mounted under it then propagate to (and their removal reaches)
/// every mount namespace copied from this one, and ours and `ip netns`' stay
/// in one mount rather than one hiding the other.
fn shared_run_dir(dir: &Path) -> Result<()> {
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, dir, Some("none"), shared, None::<&str>) {
        Ok(()) => return Ok(()),
        // Not a mount point yet.
        Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(sys(format!("making {} shared", dir.display()))(e)),
    }
    mount(Some(dir), dir, Some("none"), MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(sys(format!("bind-mounting {} on itself", dir.display())))?;
    mount(None::<&str>, dir, Some("none"), shared, None::<&str>)
        .map_err(sys(format!("making {} shared", dir.display())))
}

impl NetNs {
    /// Creates the namespace `name` (an error if it exists), with `lo` down as the kernel makes it.
    pub fn create(name: &str) -> Result<NetNs> {
        let dir = Path::new(RUN_DIR);
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        shared_run_dir(dir)?;
        let path = dir.join(name);
        std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(io(&path))?;
        let ns = NetNs { name: name.to_string(), path };
        // unshare moves the calling thread: do it on a thread of its own, which ends with it.
        let target = ns.path.clone();
        let made = std::thread::spawn(move || -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unshare(CLONE_NEWNET)"))?;
            mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(sys(format!("bind-mounting the namespace on {}", target.display())))
        })
        .join()
        .map_err(|_| Error::Thread("creating a namespace".into()))?;
        if let Err(e) = made {
            let _ = std::fs::remove_file(&ns.path);
            return Err(e);
        }
        Ok(ns)
    }

    /// An existing namespace.
    pub fn open(name: &str) -> Result<NetNs> {
        let path = Path::new(RUN_DIR).join(name);
        if !path.exists() {
            return Err(Error::NoSuchNamespace(name.to_string()));
        }
        Ok(NetNs { name: name.to_string(), path })
    }

    /// Whether the namespace `name` exists.
    pub fn exists(name: &str) -> bool {
        Path::new(RUN_DIR).join(name).exists()
    }

    /// The names of every namespace whose name starts with `prefix`.
    pub fn list(prefix: &str) -> Result<Vec<String>> {
        let dir = Path::new(RUN_DIR);
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::Io(dir.to_path_buf(), e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        Ok(names)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle on the namespace, e.g. to move a link into it.
    pub fn file(&self) -> Result<File> {
        File::open(&self.path).map_err(io(&self.path))
    }

    /// Removes the namespace's name. The namespace itself goes once nothing
    /// (no process, no open handle) is in it any more.
    pub fn delete(self) -> Result<()> {
        match umount2(&self.path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(sys(format!("unmounting {}", self.path.display()))(e)),
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io(self.path, e)),
        }
    }

    /// Runs `f` on a thread of its own inside the namespace and returns what it returns.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        let file = self.file()?;
        std::thread::spawn(move || -> Result<R> {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(sys("entering a network namespace"))?;
            Ok(f())
        })
        .join()
        .map_err(|_| Error::Thread(format!("work in namespace {} panicked", self.name)))?
    }
}
