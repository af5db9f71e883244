//! Small filesystem and memory helpers shared by the stages: atomic writes, file checksums,
//! and the resident-memory side of memory maps (giving pages back, reading RSS, a limit).

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

/// A resident-memory limit that a searcher's snapshots share (see
/// `EngineOptions::resident_limit`): searches check it after each vector file and at their
/// end, and give mapped pages back while the process is over it.
#[derive(Debug)]
pub struct ResidentLimit {
    bytes: u64,
    releases: std::sync::atomic::AtomicU64,
}

impl ResidentLimit {
    pub fn new(bytes: u64) -> Self {
        ResidentLimit { bytes, releases: Default::default() }
    }

    /// Whether this process's resident memory is over the limit now (never where it cannot
    /// be read).
    pub fn over(&self) -> bool {
        resident_bytes().is_some_and(|rss| rss > self.bytes)
    }

    /// Counts one giving back of pages.
    pub fn count_release(&self) {
        self.releases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many times pages were given back under this limit.
    pub fn releases(&self) -> u64 {
        self.releases.load(std::sync::atomic::Ordering::Relaxed)
    }
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

/// Drops the pages of `bytes`, data compiled into this program (`include_bytes!`), from the
/// resident set, as [`release_mapped`] does for a file mapping: they are read back from the
/// executable on the next access. Only whole pages inside `bytes` are dropped, and only when
/// `/proc/self/maps` shows them in a read-only mapping of a file: in anonymous memory (a
/// packed executable, say) dropping would zero them, so nothing is done there. A no-op off
/// Linux.
pub fn release_static(bytes: &'static [u8]) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf only reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let Ok(page) = usize::try_from(page) else { return };
        if page == 0 || bytes.is_empty() {
            return;
        }
        let (start, end) = (bytes.as_ptr() as usize, bytes.as_ptr() as usize + bytes.len());
        let (first, last) = (start.div_ceil(page) * page, end / page * page);
        if first >= last || !in_read_only_file_mapping(start, end) {
            return;
        }
        // SAFETY: [first, last) lies inside `bytes`, static data in a read-only mapping of a
        // file (checked above) that nothing writes: dropped pages read back the same bytes.
        unsafe {
            libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_DONTNEED);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = bytes;
}

/// Whether `[start, end)` lies within one mapping of `/proc/self/maps` that is backed by a
/// file and not writable.
#[cfg(target_os = "linux")]
fn in_read_only_file_mapping(start: usize, end: usize) -> bool {
    let Ok(maps) = fs::read_to_string("/proc/self/maps") else { return false };
    maps.lines().any(|line| {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms), Some(_off), Some(_dev), Some(inode)) = (f.next(), f.next(), f.next(), f.next(), f.next()) else {
            return false;
        };
        let path = f.next().unwrap_or("");
        let Some((a, b)) = range.split_once('-') else { return false };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else { return false };
        a <= start && end <= b && !perms.contains('w') && inode != "0" && path.starts_with('/')
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    static DATA: [u8; 1 << 16] = {
        let mut d = [0u8; 1 << 16];
        let mut i = 0;
        while i < d.len() {
            d[i] = (i % 251) as u8;
            i += 1;
        }
        d
    };

    /// How many of the pages wholly inside `d` are mapped in this process, and how many there
    /// are, from `/proc/self/pagemap` (bit 63 of each page's entry: present).
    fn present_pages(d: &[u8]) -> (usize, usize) {
        use std::io::{Read, Seek, SeekFrom};
        // SAFETY: sysconf only reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let (first, last) = ((d.as_ptr() as usize).div_ceil(page), (d.as_ptr() as usize + d.len()) / page);
        let mut f = File::open("/proc/self/pagemap").unwrap();
        f.seek(SeekFrom::Start(first as u64 * 8)).unwrap();
        let mut buf = vec![0u8; (last - first) * 8];
        f.read_exact(&mut buf).unwrap();
        (buf.chunks(8).filter(|e| u64::from_le_bytes((*e).try_into().unwrap()) >> 63 == 1).count(), last - first)
    }

    /// Static data given back leaves the resident set and reads back the same bytes; heap
    /// memory is refused (dropping it would zero it).
    #[test]
    fn static_data_is_given_back_and_reads_the_same() {
        let data: &'static [u8] = &DATA;
        let addr = data.as_ptr() as usize;
        assert!(in_read_only_file_mapping(addr, addr + data.len()), "static data is not in a read-only file mapping");
        let sum = |d: &[u8]| d.iter().map(|&b| b as u64).sum::<u64>();
        let expected = sum(std::hint::black_box(data));
        let (present, pages) = present_pages(data);
        assert!(pages > 0 && present == pages, "{present} of {pages} pages present after reading");
        release_static(data);
        assert_eq!(present_pages(data).0, 0);
        assert_eq!(sum(std::hint::black_box(data)), expected);
        assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        let heap = vec![7u8; 1 << 20].into_boxed_slice();
        let heap: &'static [u8] = Box::leak(heap);
        assert!(!in_read_only_file_mapping(heap.as_ptr() as usize, heap.as_ptr() as usize + heap.len()));
        release_static(heap);
        assert!(heap.iter().all(|&b| b == 7));
    }
}
