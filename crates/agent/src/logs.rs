//! Container logs as kubelet serves them from CRI log files: one file per
//! run (`<n>.log` under the container's directory), lines
//! `<RFC 3339 nano> <stream> <F|P> <text>`; `previous`, `tailLines`,
//! `sinceSeconds`/`sinceTime`, `timestamps`, `limitBytes` and `follow` as
//! `kubectl logs` asks for them.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

/// What `kubectl logs` asked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    /// Only lines at or after this instant.
    pub since: Option<jiff::Timestamp>,
    pub limit_bytes: Option<usize>,
}

impl Options {
    /// From the query string kubelet receives (the API server passes `kubectl logs`' on).
    pub fn parse(query: Option<&str>) -> Result<Options, String> {
        let mut o = Options::default();
        for (k, v) in kubesvc_api::url::query_pairs(query) {
            let flag = || v == "true" || v == "1";
            match k.as_str() {
                "follow" => o.follow = flag(),
                "previous" => o.previous = flag(),
                "timestamps" => o.timestamps = flag(),
                "tailLines" => {
                    o.tail_lines =
                        Some(v.parse::<i64>().map_err(|_| format!("invalid tailLines {v:?}"))?.max(0) as usize)
                }
                "limitBytes" => {
                    o.limit_bytes =
                        Some(v.parse::<i64>().map_err(|_| format!("invalid limitBytes {v:?}"))?.max(1) as usize)
                }
                "sinceSeconds" => {
                    let s = v.parse::<i64>().map_err(|_| format!("invalid sinceSeconds {v:?}"))?.max(1);
                    o.since = Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s));
                }
                "sinceTime" => o.since = Some(v.parse().map_err(|_| format!("invalid sinceTime {v:?}"))?),
                _ => {}
            }
        }
        Ok(o)
    }
}

/// The runs of a container that have a log, oldest first.
pub fn runs(dir: &Path) -> Vec<u32> {
    let mut runs: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    runs.sort_unstable();
    runs
}

/// One CRI line: (timestamp text, text, whether it ends a line).
fn parse(line: &str) -> Option<(&str, &str, bool)> {
    let mut parts = line.splitn(4, ' ');
    let ts = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    Some((ts, parts.next().unwrap_or_default(), tag != "P"))
}

/// Turns CRI lines into what `kubectl logs` prints, filtering and limiting as asked.
struct Render {
    opts: Options,
    /// A partial line's start, waiting for its end.
    pending: String,
    written: usize,
}

impl Render {
    fn line(&mut self, raw: &str, out: &mut Vec<u8>) -> bool {
        let Some((ts, text, full)) = parse(raw) else { return true };
        if let Some(since) = self.opts.since
            && ts.parse::<jiff::Timestamp>().is_ok_and(|t| t < since)
        {
            return true;
        }
        if self.pending.is_empty() && self.opts.timestamps {
            self.pending.push_str(ts);
            self.pending.push(' ');
        }
        self.pending.push_str(text);
        if !full {
            return true;
        }
        self.pending.push('\n');
        let mut bytes = std::mem::take(&mut self.pending).into_bytes();
        if let Some(limit) = self.opts.limit_bytes {
            let room = limit.saturating_sub(self.written);
            bytes.truncate(room);
        }
        self.written += bytes.len();
        out.extend_from_slice(&bytes);
        self.opts.limit_bytes.is_none_or(|l| self.written < l)
    }
}

/// Whether run `n` of the container in `dir` has ended.
fn ended(dir: &Path, n: u32) -> bool {
    dir.join(format!("{n}.result")).exists() || runs(dir).last().is_some_and(|last| *last > n)
}

/// Streams the log of run `n` in `dir` into `tx`, following it while the run lasts if asked.
pub async fn stream(dir: PathBuf, n: u32, opts: Options, tx: mpsc::Sender<Vec<u8>>) {
    let path = dir.join(format!("{n}.log"));
    let Ok(mut file) = std::fs::File::open(&path) else { return };
    let mut text = String::new();
    if file.read_to_string(&mut text).is_err() {
        return;
    }
    // Whole lines only; a line being written is read on the next pass.
    let mut consumed = text.rfind('\n').map_or(0, |i| i + 1);
    let mut lines: Vec<&str> = text[..consumed].lines().collect();
    if let Some(tail) = opts.tail_lines {
        // Count printed lines (a partial line joins the next).
        let mut full = 0;
        let mut start = lines.len();
        for (i, l) in lines.iter().enumerate().rev() {
            if parse(l).is_some_and(|(_, _, f)| f) {
                if full == tail {
                    break;
                }
                full += 1;
            }
            start = i;
        }
        lines.drain(..start);
    }
    let mut render = Render { opts: opts.clone(), pending: String::new(), written: 0 };
    let mut out = Vec::new();
    let mut more = true;
    for l in lines {
        if !render.line(l, &mut out) {
            more = false;
            break;
        }
    }
    if !out.is_empty() && tx.send(std::mem::take(&mut out)).await.is_err() {
        return;
    }
    if !opts.follow || !more {
        return;
    }
    loop {
        let done = ended(&dir, n);
        let mut chunk = String::new();
        if file.seek(SeekFrom::Start(consumed as u64)).is_err() || file.read_to_string(&mut chunk).is_err() {
            return;
        }
        let whole = chunk.rfind('\n').map_or(0, |i| i + 1);
        consumed += whole;
        for l in chunk[..whole].lines() {
            if !render.line(l, &mut out) {
                let _ = tx.send(out).await;
                return;
            }
        }
        if !out.is_empty() && tx.send(std::mem::take(&mut out)).await.is_err() {
            return;
        }
        if done && whole == 0 {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(dir: &Path, opts: Options) -> String {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let (tx, mut rx) = mpsc::channel(16);
            tokio::spawn(stream(dir.to_path_buf(), 0, opts, tx));
            let mut out = Vec::new();
            while let Some(b) = rx.recv().await {
                out.extend(b);
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    }

    #[test]
    fn cri_lines_become_kubectl_logs_output() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.path().join("0.log"),
            "2026-01-01T00:00:01.000000000Z stdout F one\n\
             2026-01-01T00:00:02.000000000Z stderr P tw\n\
             2026-01-01T00:00:02.500000000Z stderr F o\n\
             2026-01-01T00:00:03.000000000Z stdout F three\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("0.result"), "{}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(collect(dir.path(), Options::default()), "one\ntwo\nthree\n");
        assert_eq!(collect(dir.path(), Options { tail_lines: Some(2), ..Default::default() }), "two\nthree\n");
        assert_eq!(collect(dir.path(), Options { tail_lines: Some(0), ..Default::default() }), "");
        assert_eq!(
            collect(dir.path(), Options { timestamps: true, tail_lines: Some(1), ..Default::default() }),
            "2026-01-01T00:00:03.000000000Z three\n"
        );
        let since = "2026-01-01T00:00:02Z".parse().ok();
        assert_eq!(collect(dir.path(), Options { since, ..Default::default() }), "two\nthree\n");
        assert_eq!(collect(dir.path(), Options { limit_bytes: Some(6), ..Default::default() }), "one\ntw");
        // Following a run that ended returns what it wrote.
        assert_eq!(collect(dir.path(), Options { follow: true, ..Default::default() }), "one\ntwo\nthree\n");
    }

    #[test]
    fn query_parameters() {
        let o = Options::parse(Some("follow=true&tailLines=10&timestamps=true&container=web")).unwrap_or_default();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(10));
        assert!(Options::parse(Some("tailLines=x")).is_err());
        let o = Options::parse(Some("sinceTime=2026-01-01T00%3A00%3A02Z")).unwrap_or_default();
        assert_eq!(o.since, "2026-01-01T00:00:02Z".parse().ok());
    }
}
