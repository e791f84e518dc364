//! Noticing that a mounted file changed.
//!
//! Kubernetes updates ConfigMap and Secret volumes by writing a new directory and atomically
//! swapping a `..data` symlink; the file we were told about is never written to. inotify
//! watchers on the file (Kubewarden's CLOSE_WRITE) miss that. Polling `stat` through the symlinks
//! sees it, costs one syscall per file per interval, and works the same on every filesystem.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What identifies one version of a file, read through symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl Fingerprint {
    pub fn of(path: &Path) -> io::Result<Self> {
        let m = std::fs::metadata(path)?;
        Ok(Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// Remembers the fingerprints of a set of files and says when any of them changed.
#[derive(Debug)]
pub struct ChangeDetector<const N: usize> {
    last: [Option<Fingerprint>; N],
}

impl<const N: usize> ChangeDetector<N> {
    /// Starts from the files as they are now, so the first `changed` only reports later edits.
    pub fn new(paths: [&Path; N]) -> Self {
        Self { last: paths.map(|p| Fingerprint::of(p).ok()) }
    }

    /// True when any file differs from the last call (appeared, vanished, replaced or edited).
    pub fn changed(&mut self, paths: [&Path; N]) -> bool {
        let now = paths.map(|p| Fingerprint::of(p).ok());
        let changed = now != self.last;
        self.last = now;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn sees_an_in_place_edit() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, "one").unwrap();
        let mut d = ChangeDetector::new([f.as_path()]);
        assert!(!d.changed([f.as_path()]));
        std::fs::write(&f, "two!").unwrap();
        assert!(d.changed([f.as_path()]));
        assert!(!d.changed([f.as_path()]));
    }

    #[test]
    fn sees_the_kubelet_symlink_swap() {
        // The layout kubelet writes: file -> ..data/file, ..data -> ..v1 (then ..v2).
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for v in ["..v1", "..v2"] {
            std::fs::create_dir(p.join(v)).unwrap();
            std::fs::write(p.join(v).join("file"), "same size").unwrap();
        }
        symlink("..v1", p.join("..data")).unwrap();
        symlink("..data/file", p.join("file")).unwrap();
        let f = p.join("file");
        let mut d = ChangeDetector::new([f.as_path()]);
        symlink("..v2", p.join("..data_tmp")).unwrap();
        std::fs::rename(p.join("..data_tmp"), p.join("..data")).unwrap();
        assert!(d.changed([f.as_path()]), "the swap must be noticed although no file was written");
    }
}
