//! `kubectl exec` and `kubectl attach` over WebSocket (`v5.channel.k8s.io`,
//! and `v4.channel.k8s.io` without the close channel): every message starts
//! with its channel (0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4
//! terminal size; 255 closes a channel in v5). exec runs the command inside
//! the container through `kubesvc shim --exec`, on a terminal of its own
//! with `-t`; attach streams the container's output from its log.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::ws::{self, Message};

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// What `kubectl exec` asked for.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecOptions {
    pub fn parse(query: Option<&str>) -> ExecOptions {
        let mut o = ExecOptions::default();
        for (k, v) in kubesvc_api::url::query_pairs(query) {
            let flag = v == "true" || v == "1";
            match k.as_str() {
                "command" => o.command.push(v),
                "stdin" | "input" => o.stdin = flag,
                "stdout" | "output" => o.stdout = flag,
                "stderr" => o.stderr = flag,
                "tty" => o.tty = flag,
                _ => {}
            }
        }
        o
    }
}

/// The Status kubectl reads from the error channel at the end.
fn status(exit: Option<i32>, message: Option<&str>) -> Vec<u8> {
    let v = match (exit, message) {
        (Some(0), None) => json!({"metadata": {}, "status": "Success"}),
        (Some(code), _) => json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
        }),
        (None, m) => json!({"metadata": {}, "status": "Failure", "message": m.unwrap_or("the command did not run")}),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

type SharedWriter<W> = Arc<Mutex<ws::Writer<W>>>;

async fn send<W: AsyncWrite + Unpin>(w: &SharedWriter<W>, channel: u8, data: &[u8]) -> bool {
    let mut msg = Vec::with_capacity(data.len() + 1);
    msg.push(channel);
    msg.extend_from_slice(data);
    w.lock().await.send(ws::BINARY, &msg).await.is_ok()
}

/// Copies a child's output to `channel` until it ends.
async fn pump<W: AsyncWrite + Unpin>(mut from: impl AsyncRead + Unpin, w: SharedWriter<W>, channel: u8) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !send(&w, channel, &buf[..n]).await {
                    return;
                }
            }
        }
    }
}

/// A terminal's size from kubectl's resize message (`{"Width":..,"Height":..}`).
fn size(data: &[u8]) -> Option<nix::pty::Winsize> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    Some(nix::pty::Winsize {
        ws_col: v["Width"].as_u64()? as u16,
        ws_row: v["Height"].as_u64()? as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    })
}

nix::ioctl_write_ptr_bad!(set_winsize, nix::libc::TIOCSWINSZ, nix::pty::Winsize);

fn resize(master: &OwnedFd, ws: &nix::pty::Winsize) {
    // SAFETY: TIOCSWINSZ reads one Winsize through a pointer to a live value; the fd is open.
    #[allow(unsafe_code)]
    let _ = unsafe { set_winsize(master.as_raw_fd(), ws) };
}

/// Runs `opts.command` in the container whose command is `pid`, over a WebSocket `io`.
pub async fn exec<IO>(io: IO, protocol: &str, shim: PathBuf, pid: u32, opts: ExecOptions)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(io);
    let mut reader = ws::Reader::new(r);
    let writer: SharedWriter<_> = Arc::new(Mutex::new(ws::Writer::new(w)));
    let mut cmd = tokio::process::Command::new(&shim);
    cmd.arg("shim").arg("--exec").arg(pid.to_string());
    if opts.tty {
        cmd.arg("--tty");
    }
    cmd.arg("--").args(&opts.command).kill_on_drop(true);
    let mut master: Option<OwnedFd> = None;
    if opts.tty {
        let pty = match nix::pty::openpty(None, None) {
            Ok(p) => p,
            Err(e) => {
                send(&writer, ERROR, &status(None, Some(&format!("allocating a terminal: {e}")))).await;
                let _ = writer.lock().await.close().await;
                return;
            }
        };
        let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
        match (dup(&pty.slave), dup(&pty.slave), dup(&pty.slave)) {
            (Ok(a), Ok(b), Ok(c)) => {
                cmd.stdin(a).stdout(b).stderr(c);
            }
            _ => return,
        }
        master = Some(pty.master);
    } else {
        cmd.stdin(if opts.stdin { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(if opts.stdout { Stdio::piped() } else { Stdio::null() });
        cmd.stderr(if opts.stderr { Stdio::piped() } else { Stdio::null() });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            send(&writer, ERROR, &status(None, Some(&format!("running the command: {e}")))).await;
            let _ = writer.lock().await.close().await;
            return;
        }
    };
    drop(cmd);
    let mut stdin_sink: Option<Box<dyn AsyncWrite + Send + Unpin>> = None;
    let mut outputs = Vec::new();
    let mut term_fd = None;
    if let Some(m) = master {
        let (Ok(read_end), Ok(write_end)) = (m.try_clone(), m.try_clone()) else { return };
        outputs.push(tokio::spawn(pump(tokio::fs::File::from(std::fs::File::from(read_end)), writer.clone(), STDOUT)));
        if opts.stdin {
            stdin_sink = Some(Box::new(tokio::fs::File::from(std::fs::File::from(write_end))));
        }
        term_fd = Some(m);
    } else {
        if let Some(out) = child.stdout.take() {
            outputs.push(tokio::spawn(pump(out, writer.clone(), STDOUT)));
        }
        if let Some(err) = child.stderr.take() {
            outputs.push(tokio::spawn(pump(err, writer.clone(), STDERR)));
        }
        if let Some(i) = child.stdin.take() {
            stdin_sink = Some(Box::new(i));
        }
    }
    let v5 = protocol == V5;
    // What the client sends: stdin, terminal sizes, closes.
    let input = {
        let writer = writer.clone();
        async move {
            while let Ok(Some(m)) = reader.next().await {
                match m {
                    Message::Binary(data) | Message::Text(data) if !data.is_empty() => match data[0] {
                        STDIN => {
                            if let Some(s) = stdin_sink.as_mut()
                                && (s.write_all(&data[1..]).await.is_err() || s.flush().await.is_err())
                            {
                                stdin_sink = None;
                            }
                        }
                        RESIZE => {
                            if let (Some(fd), Some(ws)) = (&term_fd, size(&data[1..])) {
                                resize(fd, &ws);
                            }
                        }
                        CLOSE if v5 && data.get(1) == Some(&STDIN) => {
                            if let Some(mut s) = stdin_sink.take() {
                                let _ = s.shutdown().await;
                            }
                        }
                        _ => {}
                    },
                    Message::Ping(p) => {
                        let _ = writer.lock().await.send(ws::PONG, &p).await;
                    }
                    Message::Close => return,
                    _ => {}
                }
            }
        }
    };
    let mut input = tokio::spawn(input);
    // The client gone (its connection ended) ends the command, as a hang-up would.
    let exit = tokio::select! {
        status = child.wait() => status.ok().and_then(|s| s.code()),
        _ = &mut input => {
            let _ = child.start_kill();
            child.wait().await.ok().and_then(|s| s.code())
        }
    };
    for o in outputs {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), o).await;
    }
    input.abort();
    let message = match exit {
        Some(126) | Some(127) | None => Some("the command could not run in the container".to_string()),
        _ => None,
    };
    let final_status = match (exit, message) {
        (Some(c @ (126 | 127)), _) => status(Some(c), None),
        (e, m) => status(e, m.as_deref()),
    };
    send(&writer, ERROR, &final_status).await;
    let _ = writer.lock().await.close().await;
}

/// `kubectl attach`: the container's output from now on, until it ends.
pub async fn attach<IO>(io: IO, log_dir: PathBuf, run: u32, opts: ExecOptions)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(io);
    let mut reader = ws::Reader::new(r);
    let writer: SharedWriter<_> = Arc::new(Mutex::new(ws::Writer::new(w)));
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let since = Some(jiff::Timestamp::now());
    let follow = crate::logs::Options { follow: true, since, ..Default::default() };
    let stream = tokio::spawn(crate::logs::stream(log_dir, run, follow, tx));
    let w2 = writer.clone();
    let input = tokio::spawn(async move {
        while let Ok(Some(m)) = reader.next().await {
            match m {
                Message::Ping(p) => {
                    let _ = w2.lock().await.send(ws::PONG, &p).await;
                }
                Message::Close => return,
                _ => {}
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        if opts.stdout && !send(&writer, STDOUT, &chunk).await {
            break;
        }
    }
    stream.abort();
    input.abort();
    send(&writer, ERROR, &status(Some(0), None)).await;
    let _ = writer.lock().await.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_kubectl_query() {
        let o = ExecOptions::parse(Some("command=sh&command=-c&command=echo+hi%21&stdin=true&stdout=true&tty=true"));
        assert_eq!(o.command, ["sh", "-c", "echo hi!"]);
        assert!(o.stdin && o.stdout && o.tty && !o.stderr);
    }

    #[test]
    fn the_final_status_is_kubernetes() {
        assert_eq!(String::from_utf8_lossy(&status(Some(0), None)), r#"{"metadata":{},"status":"Success"}"#);
        let v: serde_json::Value = serde_json::from_slice(&status(Some(3), None)).unwrap_or_default();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
    }
}
