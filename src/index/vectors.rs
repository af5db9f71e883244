//! Vector store: usearch HNSW files, one written per commit and never modified, opened with
//! zero-copy `view` over a memory map. New vectors of a run live in an in-memory (mutable)
//! usearch index until the commit saves it; compaction merges files and drops dead keys.

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

/// A committed vector file, memory-mapped.
pub struct VectorFile {
    /// A view of `_map` (declared first, so dropped first).
    index: Index,
    _map: memmap2::Mmap,
    kind: VectorKind,
    path: std::path::PathBuf,
    /// Searches running now (at most `SEARCH_CONTEXTS`; more wait).
    running: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl VectorFile {
    /// Views `path`, after checking its CRC32 against the manifest's.
    pub fn open(path: &Path, dim: usize, kind: VectorKind, crc32: u32) -> Result<Self> {
        let bytes = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: vector files are immutable once committed.
        let map = unsafe { memmap2::Mmap::map(&bytes) }.map_err(|e| Error::io(path, e))?;
        if crc32fast::hash(&map) != crc32 {
            return Err(Error::corrupt(path, "checksum mismatch"));
        }
        let index = Index::new(&options(dim, kind)).map_err(|e| usearch_err(path, e))?;
        // SAFETY: the map lives as long as the index (same struct, dropped after it) and its
        // bytes never change.
        unsafe { index.view_from_buffer(&map) }.map_err(|e| usearch_err(path, e))?;
        index.reserve_capacity_and_threads(index.size(), SEARCH_CONTEXTS).map_err(|e| usearch_err(path, e))?;
        if index.dimensions() != dim {
            return Err(Error::corrupt(path, format!("{} dimensions, expected {dim}", index.dimensions())));
        }
        release_after_open(&map);
        Ok(VectorFile { index, _map: map, kind, path: path.to_path_buf(), running: Default::default(), freed: Default::default() })
    }

    pub fn len(&self) -> usize {
        self.index.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Top `k` live keys with a similarity (higher is better: cosine, or 1 - normalised Hamming).
    pub fn search(&self, query: &[f32], k: usize, live: &LiveSet, exact: bool) -> Result<Vec<(u64, f32)>> {
        if self.index.size() == 0 || k == 0 {
            return Ok(Vec::new());
        }
        let q = encode(self.kind, query);
        let _slot = self.search_slot();
        let m = if exact {
            // usearch's exact search has no filter: over-fetch, and fetch four times as many
            // while the dead keys among them leave fewer than `k` (a full sort of every key
            // took seconds per query at a million chunks).
            let n = self.index.size();
            let mut fetch = k.saturating_mul(4).max(64).min(n);
            loop {
                let all = match &q {
                    Encoded::F32(q) => self.index.exact_search(q, fetch),
                    Encoded::Bits(q) => self.index.exact_search(q, fetch),
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
                Encoded::F32(q) => self.index.filtered_search(q, k, |key| live.contains(key)),
                Encoded::Bits(q) => self.index.filtered_search(q, k, |key| live.contains(key)),
            }
            .map_err(|e| usearch_err(&self.path, e))?;
            (m.keys, m.distances)
        };
        let dim = self.index.dimensions() as f32;
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
        let dim = self.index.dimensions();
        if self.kind == VectorKind::B1 {
            // usearch 2.26 checks a b1 read buffer against the dimensions in bits, though it
            // fills only the first dim/8 bytes.
            let mut bits = vec![b1x8(0); dim];
            let n = self.index.get(key, &mut bits).map_err(|e| usearch_err(&self.path, e))?;
            return Ok((n > 0).then(|| decode_bits(&bits, dim)));
        }
        let mut v = vec![0f32; dim];
        let n = self.index.get(key, &mut v).map_err(|e| usearch_err(&self.path, e))?;
        Ok((n > 0).then_some(v))
    }

    /// The stored vector of `key`, to store again unchanged ([`VectorDelta::add_stored`]).
    pub fn get_stored(&self, key: u64) -> Result<Option<Stored>> {
        if self.kind != VectorKind::I8 {
            return Ok(self.get(key)?.map(Stored::F32));
        }
        let mut v = vec![0i8; self.index.dimensions()];
        let n = self.index.get(key, &mut v).map_err(|e| usearch_err(&self.path, e))?;
        Ok((n > 0).then_some(Stored::I8(v)))
    }

    /// Drops the file's pages from this process's resident set (see
    /// [`crate::fsutil::release_mapped`]); searches running meanwhile map what they touch again.
    pub fn release_pages(&self) {
        crate::fsutil::release_mapped(&self._map);
    }

    /// Bytes of memory the index holds (the mapped file is not counted by usearch).
    pub fn memory_usage(&self) -> usize {
        self.index.memory_usage()
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
