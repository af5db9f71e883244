//! Small filesystem helpers shared by every stage that writes files.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// A file's modification time as the index records it: nanoseconds since the epoch (0 when
/// the platform does not say).
pub fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A file's length and CRC32, read in 1 MiB pieces (not mapped, so a large file does not
/// count toward the process's resident memory).
pub fn crc32_file(path: &Path) -> Result<(u64, u32)> {
    use std::io::Read;
    let mut f = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingFile(path.to_path_buf()),
        _ => Error::io(path, e),
    })?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok((len, h.finalize()))
}

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one:
/// temporary file in the same directory, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] for contents written by `fill`, for files too large to build in memory.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut File) -> std::io::Result<()>) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io(path, e))
}

/// Hands memory the allocator holds free back to the system (glibc keeps freed blocks for
/// reuse; memory about to be taken by something that does not come from it, such as the
/// vector graph's own memory maps, cannot reuse them).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own heaps to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drops a read-only file mapping's pages from this process's resident set. They stay in
/// the page cache (shared, and reclaimable by the kernel), so the next access maps them again
/// without reading the disk, with the same bytes. A no-op where it is not supported.
pub fn release_mapped(map: &memmap2::Mmap) {
    #[cfg(unix)]
    // SAFETY: every map given here is a read-only mapping of an immutable file, never written
    // through: dropped pages are read back from the file (or page cache) on the next access.
    let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
    #[cfg(not(unix))]
    let _ = map;
}

/// This process's resident memory in bytes, anonymous and file-backed together (what `ps`
/// and `top` show as RSS). Read from `/proc/self/statm` on Linux; `None` elsewhere.
pub fn resident_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let statm = fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf only reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(pages * u64::try_from(page).ok().filter(|p| *p > 0)?)
    }
    #[cfg(not(target_os = "linux"))]
    None
}
