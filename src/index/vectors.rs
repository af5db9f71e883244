//! Vector store: usearch HNSW files, one written per commit and never modified, read through
//! a zero-copy `view` of a memory map, made on first use. New vectors of a run live in an
//! in-memory (mutable) usearch index until the commit saves it; compaction merges files and
//! drops dead keys.

use std::path::Path;
use usearch::{b1x8, Index, IndexOptions, MetricKind, ScalarKind};

use super::manifest::{LiveSet, VectorKind};
use crate::error::{Error, Result};

fn options(dim: usize, kind: VectorKind) -> IndexOptions {
    let (metric, quantization) = match kind {
        VectorKind::I8 => (MetricKind::Cos, ScalarKind::I8),
        VectorKind::F16 => (MetricKind::Cos, ScalarKind::F16),
        VectorKind::F32 => (MetricKind::Cos, ScalarKind::F32),
        VectorKind::B1 => (MetricKind::Hamming, ScalarKind::B1),
    };
    IndexOptions {
        dimensions: dim,
        metric,
        quantization,
        connectivity: 16,
        expansion_add: 128,
        expansion_search: 64,
        multi: false,
    }
}

/// Searches one vector file runs at once. usearch keeps one search context per concurrent
/// search, by default as many as the machine has cores, and fails a search past them ("Reserve
/// capacity ahead of searches!"); a context is small (a visited set and a query buffer).
const SEARCH_CONTEXTS: usize = 64;

fn usearch_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::corrupt(path, format!("usearch: {e}"))
}

/// Vectors waiting for a commit.
pub struct VectorDelta {
    index: Index,
    kind: VectorKind,
    dim: usize,
}

impl VectorDelta {
    pub fn new(dim: usize, kind: VectorKind) -> Result<Self> {
        let index = Index::new(&options(dim, kind)).map_err(|e| Error::Config(format!("usearch: {e}")))?;
        Ok(VectorDelta { index, kind, dim })
    }

    /// Makes room for one more vector (usearch does not grow by itself).
    fn make_room(&mut self) -> Result<()> {
        if self.index.size() + 1 > self.index.capacity() {
            let cap = (self.index.capacity() * 2).max(1024);
            self.index.reserve(cap).map_err(|e| Error::Config(format!("usearch reserve: {e}")))?;
        }
        Ok(())
    }

    pub fn add(&mut self, key: u64, v: &[f32]) -> Result<()> {
        self.make_room()?;
        let r = match encode(self.kind, v) {
            Encoded::F32(v) => self.index.add(key, v),
            Encoded::Bits(b) => self.index.add(key, &b),
        };
        r.map_err(|e| Error::Config(format!("usearch add: {e}")))
    }

    /// Adds a vector read back with [`VectorFile::get_stored`]: it is stored with the same codes.
    pub fn add_stored(&mut self, key: u64, v: &Stored) -> Result<()> {
        match v {
            Stored::F32(v) => self.add(key, v),
            Stored::I8(codes) => {
                self.make_room()?;
                self.index.add(key, codes).map_err(|e| Error::Config(format!("usearch add: {e}")))
            }
        }
    }

    pub fn len(&self) -> usize {
        self.index.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Saves to `path` (then fsynced); the caller renames it into place.
    pub fn save(&self, path: &Path) -> Result<()> {
        let s = path.to_str().ok_or_else(|| Error::InvalidInput(format!("non-UTF-8 path {}", path.display())))?;
        self.index.save(s).map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))?;
        std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
}

/// A stored vector in a form that stores again exactly: i8 as its codes (usearch scales
/// floats by their norm before truncating to i8, so the dequantized vector would not
/// re-quantize to the same codes); f16, f32 and b1 (as 0/1) dequantized, which do.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    I8(Vec<i8>),
    F32(Vec<f32>),
}

/// A vector as usearch takes it: floats, or for b1 storage the sign bits packed eight to a
/// byte (usearch's `b1x8`; it counts the dimensions in bits).
enum Encoded<'a> {
    F32(&'a [f32]),
    Bits(Vec<b1x8>),
}

fn encode(kind: VectorKind, v: &[f32]) -> Encoded<'_> {
    match kind {
        VectorKind::B1 => {
            let mut bits = vec![b1x8(0); v.len().div_ceil(8)];
            for (i, x) in v.iter().enumerate() {
                if *x > 0.0 {
                    bits[i / 8].0 |= 1 << (i % 8);
                }
            }
            Encoded::Bits(bits)
        }
        _ => Encoded::F32(v),
    }
}

/// Packed sign bits back to 0/1 floats (`dim` of them).
fn decode_bits(bits: &[b1x8], dim: usize) -> Vec<f32> {
    (0..dim).map(|i| if bits[i / 8].0 >> (i % 8) & 1 == 1 { 1.0 } else { 0.0 }).collect()
}

/// Tells the kernel that a vector file's pages, all read by the checksum and by usearch's walk
/// over its nodes when it opens, are not needed again soon, and that later reads (graph hops)
/// are random. They stay in the page cache, but leave this process's resident set until a
/// search touches them again, and a fault no longer reads ahead (the kernel still maps cached
/// neighbours of a faulting page). Without it a writer at a million chunks held about 370 MB
/// of vector files resident from the moment it opened.
fn release_after_open(map: &memmap2::Mmap) {
    #[cfg(unix)]
    let _ = map.advise(memmap2::Advice::Random);
    crate::fsutil::release_mapped(map);
}

/// A committed vector file, memory-mapped. usearch's view of it is made on first use: a view
/// builds a key table in memory (about 60 bytes a vector: 61 MB at a million chunks), which a
/// writer that only appends and plans merges never needs.
pub struct VectorFile {
    /// A view of `_map` (declared first, so dropped first); made by [`VectorFile::index`].
    view: std::sync::OnceLock<Index>,
    /// Held while a view is being made.
    viewing: std::sync::Mutex<()>,
    _map: memmap2::Mmap,
    kind: VectorKind,
    dim: usize,
    /// Vectors in the file, from its header.
    len: usize,
    path: std::path::PathBuf,
    /// Searches running now (at most `SEARCH_CONTEXTS`; more wait).
    running: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl VectorFile {
    /// Maps `path` after checking its CRC32 against the manifest's, and reads its header.
    pub fn open(path: &Path, dim: usize, kind: VectorKind, crc32: u32) -> Result<Self> {
        let bytes = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: vector files are immutable once committed.
        let map = unsafe { memmap2::Mmap::map(&bytes) }.map_err(|e| Error::io(path, e))?;
        if crc32fast::hash(&map) != crc32 {
            return Err(Error::corrupt(path, "checksum mismatch"));
        }
        let head = Index::metadata_from_buffer(&map).map_err(|e| usearch_err(path, e))?;
        if head.dimensions != dim as u64 {
            return Err(Error::corrupt(path, format!("{} dimensions, expected {dim}", head.dimensions)));
        }
        let len = usize::try_from(head.count_present).map_err(|_| Error::corrupt(path, "vector count out of range"))?;
        release_after_open(&map);
        Ok(VectorFile {
            view: Default::default(),
            viewing: Default::default(),
            _map: map,
            kind,
            dim,
            len,
            path: path.to_path_buf(),
            running: Default::default(),
            freed: Default::default(),
        })
    }

    /// usearch's view of the file, made on the first call.
    fn index(&self) -> Result<&Index> {
        if let Some(index) = self.view.get() {
            return Ok(index);
        }
        let _one = self.viewing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = self.view.get() {
            return Ok(index);
        }
        let path = &self.path;
        let index = Index::new(&options(self.dim, self.kind)).map_err(|e| usearch_err(path, e))?;
        // SAFETY: the map lives as long as the view (same struct, dropped after it) and its
        // bytes never change.
        unsafe { index.view_from_buffer(&self._map) }.map_err(|e| usearch_err(path, e))?;
        index.reserve_capacity_and_threads(index.size(), SEARCH_CONTEXTS).map_err(|e| usearch_err(path, e))?;
        if index.dimensions() != self.dim || index.size() != self.len {
            return Err(Error::corrupt(path, format!("{} vectors of {} dimensions, the header says {} of {}", index.size(), index.dimensions(), self.len, self.dim)));
        }
        // Making the view read every node.
        release_after_open(&self._map);
        Ok(self.view.get_or_init(|| index))
    }

    /// Makes usearch's view now, so that the first search does not (a searcher warming up).
    pub fn prepare(&self) -> Result<()> {
        self.index().map(drop)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Top `k` live keys with a similarity (higher is better: cosine, or 1 - normalised Hamming).
    pub fn search(&self, query: &[f32], k: usize, live: &LiveSet, exact: bool) -> Result<Vec<(u64, f32)>> {
        if self.len == 0 || k == 0 {
            return Ok(Vec::new());
        }
        let index = self.index()?;
        let q = encode(self.kind, query);
        let _slot = self.search_slot();
        let m = if exact {
            // usearch's exact search has no filter: over-fetch, and fetch four times as many
            // while the dead keys among them leave fewer than `k` (a full sort of every key
            // took seconds per query at a million chunks).
            let n = index.size();
            let mut fetch = k.saturating_mul(4).max(64).min(n);
            loop {
                let all = match &q {
                    Encoded::F32(q) => index.exact_search(q, fetch),
                    Encoded::Bits(q) => index.exact_search(q, fetch),
                }
                .map_err(|e| usearch_err(&self.path, e))?;
                let mut keys = Vec::new();
                let mut dist = Vec::new();
                for (key, d) in all.keys.into_iter().zip(all.distances) {
                    if live.contains(key) {
                        keys.push(key);
                        dist.push(d);
                        if keys.len() == k {
                            break;
                        }
                    }
                }
                if keys.len() == k || fetch == n {
                    break (keys, dist);
                }
                fetch = fetch.saturating_mul(4).min(n);
            }
        } else {
            let m = match &q {
                Encoded::F32(q) => index.filtered_search(q, k, |key| live.contains(key)),
                Encoded::Bits(q) => index.filtered_search(q, k, |key| live.contains(key)),
            }
            .map_err(|e| usearch_err(&self.path, e))?;
            (m.keys, m.distances)
        };
        let dim = self.dim as f32;
        Ok(m.0
            .into_iter()
            .zip(m.1)
            .map(|(key, d)| (key, if self.kind == VectorKind::B1 { 1.0 - d / dim } else { 1.0 - d }))
            .collect())
    }

    /// Waits for one of the file's search contexts.
    fn search_slot(&self) -> SearchSlot<'_> {
        let mut n = self.running.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= SEARCH_CONTEXTS {
            n = self.freed.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        SearchSlot(self)
    }

    /// The stored (dequantized) vector of `key`.
    pub fn get(&self, key: u64) -> Result<Option<Vec<f32>>> {
        let (index, dim) = (self.index()?, self.dim);
        if self.kind == VectorKind::B1 {
            // usearch 2.26 checks a b1 read buffer against the dimensions in bits, though it
            // fills only the first dim/8 bytes.
            let mut bits = vec![b1x8(0); dim];
            let n = index.get(key, &mut bits).map_err(|e| usearch_err(&self.path, e))?;
            return Ok((n > 0).then(|| decode_bits(&bits, dim)));
        }
        let mut v = vec![0f32; dim];
        let n = index.get(key, &mut v).map_err(|e| usearch_err(&self.path, e))?;
        Ok((n > 0).then_some(v))
    }

    /// The stored vector of `key`, to store again unchanged ([`VectorDelta::add_stored`]).
    pub fn get_stored(&self, key: u64) -> Result<Option<Stored>> {
        if self.kind != VectorKind::I8 {
            return Ok(self.get(key)?.map(Stored::F32));
        }
        let mut v = vec![0i8; self.dim];
        let n = self.index()?.get(key, &mut v).map_err(|e| usearch_err(&self.path, e))?;
        Ok((n > 0).then_some(Stored::I8(v)))
    }

    /// Drops the file's pages from this process's resident set (see
    /// [`crate::fsutil::release_mapped`]); searches running meanwhile map what they touch again.
    pub fn release_pages(&self) {
        crate::fsutil::release_mapped(&self._map);
    }

    /// Bytes of memory usearch's view holds (0 before it is made; the mapped file is not
    /// counted).
    pub fn memory_usage(&self) -> usize {
        self.view.get().map_or(0, |i| i.memory_usage())
    }
}

/// A search context in use; given back on drop.
struct SearchSlot<'a>(&'a VectorFile);

impl Drop for SearchSlot<'_> {
    fn drop(&mut self) {
        *self.0.running.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` vectors of `dim` components uniform in [-0.5, 0.5), from a seeded LCG.
    fn random_vectors(n: usize, dim: usize, mut seed: u64) -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                    })
                    .collect()
            })
            .collect()
    }

    /// A fresh directory for one test's files.
    fn test_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ponder-vectors-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `vectors` (keys 0, 1, …) as a committed file `dir/name` of `kind`.
    fn saved_vectors(vectors: &[Vec<f32>], kind: VectorKind, dir: &Path, name: &str) -> VectorFile {
        let mut delta = VectorDelta::new(vectors[0].len(), kind).unwrap();
        for (i, v) in vectors.iter().enumerate() {
            delta.add(i as u64, v).unwrap();
        }
        saved(&delta, dir, name)
    }

    /// Saves `delta` to `dir/name` and opens it as a committed file.
    fn saved(delta: &VectorDelta, dir: &Path, name: &str) -> VectorFile {
        let path = dir.join(name);
        delta.save(&path).unwrap();
        let crc = crc32fast::hash(&std::fs::read(&path).unwrap());
        VectorFile::open(&path, delta.dim(), delta.kind, crc).unwrap()
    }

    /// Exact search returns the best `k` live keys however many dead keys outrank them: here
    /// the 600 nearest of 2,000 are dead, past several rounds of over-fetching.
    #[test]
    fn exact_search_skips_any_number_of_dead_keys() {
        let dir = test_dir("exact");
        let dim = 32;
        let vectors = random_vectors(2000, dim, 7);
        let file = saved_vectors(&vectors, VectorKind::F32, &dir, "exact.usearch");
        let query = &vectors[0];
        let cos = |v: &[f32]| {
            let dot: f32 = v.iter().zip(query).map(|(a, b)| a * b).sum();
            dot / (v.iter().map(|x| x * x).sum::<f32>().sqrt() * query.iter().map(|x| x * x).sum::<f32>().sqrt())
        };
        let mut order: Vec<u64> = (0..2000).collect();
        order.sort_by(|&a, &b| cos(&vectors[b as usize]).total_cmp(&cos(&vectors[a as usize])));
        let mut dead: Vec<u64> = order[..600].to_vec();
        dead.sort_unstable();
        let mut ranges = Vec::new();
        let mut next = 0;
        for d in dead {
            ranges.push((next, d));
            next = d + 1;
        }
        ranges.push((next, 2000));
        let live = LiveSet::new(ranges);
        let got: Vec<u64> = file.search(query, 10, &live, true).unwrap().into_iter().map(|h| h.0).collect();
        assert_eq!(got, order[600..610].to_vec());
        // All live: the nearest ten, the query's own vector first.
        let all = LiveSet::new(vec![(0, 2000)]);
        let got: Vec<u64> = file.search(query, 10, &all, true).unwrap().into_iter().map(|h| h.0).collect();
        assert_eq!(got, order[..10].to_vec());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A vector read back in its stored form and stored again keeps exactly its codes, for
    /// every kind (what re-indexing relies on when it reuses the vectors of unchanged chunks).
    #[test]
    fn stored_vectors_store_again_exactly() {
        let dir = test_dir("unit");
        let dim = 384;
        let vectors: Vec<Vec<f32>> = random_vectors(20, dim, 3)
            .into_iter()
            .enumerate()
            .map(|(i, mut v)| {
                // Heavy-tailed, as sentence embeddings are (a few large components).
                v[i * 37 % dim] *= 40.0;
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / n).collect()
            })
            .collect();
        for kind in [VectorKind::I8, VectorKind::F16, VectorKind::F32, VectorKind::B1] {
            let first = saved_vectors(&vectors, kind, &dir, &format!("{kind:?}-1.usearch"));
            let mut again = VectorDelta::new(dim, kind).unwrap();
            for i in 0..vectors.len() as u64 {
                again.add_stored(i + 100, &first.get_stored(i).unwrap().unwrap()).unwrap();
            }
            let second = saved(&again, &dir, &format!("{kind:?}-2.usearch"));
            for i in 0..vectors.len() as u64 {
                assert_eq!(first.get_stored(i).unwrap(), second.get_stored(i + 100).unwrap(), "{kind:?}");
                assert_eq!(first.get(i).unwrap(), second.get(i + 100).unwrap(), "{kind:?}");
            }
            // Dequantized i8 vectors would not store the same codes (usearch rescales by the norm).
            if kind == VectorKind::I8 {
                let mut lossy = VectorDelta::new(dim, kind).unwrap();
                for i in 0..vectors.len() as u64 {
                    lossy.add(i, &first.get(i).unwrap().unwrap()).unwrap();
                }
                let third = saved(&lossy, &dir, "lossy.usearch");
                let same = (0..vectors.len() as u64).all(|i| first.get_stored(i).unwrap() == third.get_stored(i).unwrap());
                assert!(!same, "i8 dequantize/re-add became exact: the stored form is no longer needed");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Resident kB of the mapping that holds `addr`, from `/proc/self/smaps`.
    #[cfg(target_os = "linux")]
    fn mapping_rss_kb(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
                let (a, b) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16));
                if let (Ok(a), Ok(b)) = (a, b) {
                    inside = (a..b).contains(&addr);
                    continue;
                }
            }
            if inside && first == "Rss:" {
                return line.split_whitespace().nth(1).unwrap().parse().unwrap();
            }
        }
        panic!("no mapping holds {addr:#x}")
    }

    /// Giving a vector file's pages back empties its share of the resident set, and searches
    /// afterwards map what they need again and give the same answers.
    #[cfg(target_os = "linux")]
    #[test]
    fn released_pages_leave_the_resident_set_and_searches_still_answer() {
        let dir = test_dir("release");
        let vectors = random_vectors(6000, 64, 5);
        let file = saved_vectors(&vectors, VectorKind::F32, &dir, "release.usearch");
        let live = LiveSet::new(vec![(0, 6000)]);
        let addr = file._map.as_ptr() as usize;
        let mapped_kb = file._map.len() as u64 / 1024;
        let before: Vec<_> = vectors[..20].iter().map(|q| file.search(q, 10, &live, true).unwrap()).collect();
        // An exact search reads every vector: most of the file is resident now.
        let touched = mapping_rss_kb(addr);
        assert!(touched * 2 > mapped_kb, "{touched} of {mapped_kb} kB resident after exact searches");
        file.release_pages();
        let released = mapping_rss_kb(addr);
        assert!(released * 20 < mapped_kb, "{released} of {mapped_kb} kB still resident after release");
        let after: Vec<_> = vectors[..20].iter().map(|q| file.search(q, 10, &live, true).unwrap()).collect();
        assert_eq!(before, after);
        assert!(mapping_rss_kb(addr) > released, "searches did not map pages again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Opening reads the header (count, dimensions) and makes no view: usearch's key table is
    /// built by the first search or read, once, and the answers are those of a file prepared
    /// up front. A file of other dimensions than the manifest's is refused on open.
    #[test]
    fn the_view_is_made_on_first_use() {
        let dir = test_dir("lazy");
        let vectors = random_vectors(500, 32, 9);
        let file = saved_vectors(&vectors, VectorKind::I8, &dir, "lazy.usearch");
        let path = dir.join("lazy.usearch");
        let crc = crc32fast::hash(&std::fs::read(&path).unwrap());
        assert_eq!((file.len(), file.memory_usage()), (500, 0));
        let live = LiveSet::new(vec![(0, 500)]);
        let lazy = file.search(&vectors[3], 5, &live, false).unwrap();
        assert_eq!(lazy[0].0, 3);
        let made = file.memory_usage();
        assert!(made > 0);
        assert_eq!(file.get_stored(7).unwrap(), file.get_stored(7).unwrap());
        assert_eq!(file.memory_usage(), made, "a second view was made");
        let prepared = VectorFile::open(&path, 32, VectorKind::I8, crc).unwrap();
        prepared.prepare().unwrap();
        assert!(prepared.memory_usage() > 0);
        assert_eq!(prepared.search(&vectors[3], 5, &live, false).unwrap(), lazy);
        let wrong = VectorFile::open(&path, 64, VectorKind::I8, crc).err().unwrap().to_string();
        assert!(wrong.contains("32 dimensions, expected 64"), "{wrong}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// b1 stores sign bits, searched by Hamming distance: each vector finds itself first, and
    /// reads back as its signs.
    #[test]
    fn binary_vectors_store_signs_and_find_themselves() {
        let dir = test_dir("b1");
        let dim = 384;
        let vectors = random_vectors(50, dim, 11);
        let file = saved_vectors(&vectors, VectorKind::B1, &dir, "b1.usearch");
        let live = LiveSet::new(vec![(0, 50)]);
        for (i, v) in vectors.iter().enumerate() {
            let signs: Vec<f32> = v.iter().map(|x| if *x > 0.0 { 1.0 } else { 0.0 }).collect();
            assert_eq!(file.get(i as u64).unwrap().unwrap(), signs);
            for exact in [false, true] {
                let hits = file.search(v, 3, &live, exact).unwrap();
                assert_eq!(hits[0], (i as u64, 1.0), "exact {exact}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
