//! What identifies one version of a file without reading it: modification time, size and inode.
//! The reload watchers compare these every second; the inode catches the symlink swap by which
//! Kubernetes updates mounted ConfigMaps and Secrets, which can leave time and size unchanged.
//!
//! A watcher must start from the fingerprint taken *before* the file was read, never from one
//! taken when the watcher first runs: a change made in between would otherwise become the
//! baseline and never be applied.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

/// Files up to this size also have their contents hashed by [`with_contents`].
const HASHED_UP_TO: u64 = 1 << 20;

/// One version of a file; `None` when it does not exist (or cannot be examined).
pub type Fingerprint = Option<Version>;

/// What one version of a file looks like from outside, and optionally a hash of its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    modified: SystemTime,
    len: u64,
    inode: u64,
    contents: Option<u64>,
}

/// The fingerprint of the file at `path` now, from its metadata alone: for files too large to
/// read every second (an API keys file may hold a million keys).
pub fn of(path: &Path) -> Fingerprint {
    let metadata = std::fs::metadata(path).ok()?;
    Some(Version {
        modified: metadata.modified().ok()?,
        len: metadata.len(),
        inode: metadata.ino(),
        contents: None,
    })
}

/// The fingerprint with a hash of the contents for files up to 1 MiB: two writes of the same
/// length within one tick of the file system's clock leave the metadata unchanged, and a config
/// change must never be missed for that.
pub fn with_contents(path: &Path) -> Fingerprint {
    let mut version = of(path)?;
    if version.len <= HASHED_UP_TO {
        let bytes = std::fs::read(path).ok()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut hasher);
        version.contents = Some(hasher.finish());
    }
    Some(version)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_rewrite_changes_the_fingerprint_and_a_missing_file_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert_eq!(super::of(&path), None);
        std::fs::write(&path, "one").unwrap();
        let first = super::of(&path);
        assert!(first.is_some());
        // Same size, new inode (write-then-rename, as deploy tools do).
        std::fs::write(dir.path().join("g"), "two").unwrap();
        std::fs::rename(dir.path().join("g"), &path).unwrap();
        assert_ne!(super::of(&path), first);
    }

    #[test]
    fn contents_tell_apart_writes_the_metadata_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "aaaa").unwrap();
        let first = super::with_contents(&path);
        std::fs::write(&path, "bbbb").unwrap();
        assert_ne!(super::with_contents(&path), first);
    }
}
