//! Chunk store: chunk text and metadata in immutable, checksummed segment files, zstd-
//! compressed in blocks of 64 chunks, memory-mapped for reading and decoded a block at a time.

use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::Path;

use super::container;
use crate::error::{Error, Result};

pub(crate) const MAGIC: &[u8; 8] = b"PNDRCHNK";
const BLOCK: usize = 64;

/// One stored chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    pub id: u64,
    pub start_byte: u64,
    pub end_byte: u64,
    pub start_line: u32,
    pub end_line: u32,
    pub heading: Option<String>,
    pub text: String,
    /// First and last page (1-based) the chunk's text lies on, for paged documents (PDF).
    pub pages: Option<(u32, u32)>,
}

#[derive(Serialize, Deserialize)]
struct Table {
    /// (first id in block, offset in payload, compressed length)
    blocks: Vec<(u64, u64, u64)>,
}

/// Encodes records (ascending ids) into a sealed segment file image.
pub fn encode(records: &[ChunkRecord]) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    let mut table = Table { blocks: Vec::new() };
    for block in records.chunks(BLOCK) {
        let raw = postcard::to_allocvec(block).map_err(|e| Error::Config(format!("chunk block: {e}")))?;
        let packed = zstd::bulk::compress(&raw, 3).map_err(|e| Error::Config(format!("zstd: {e}")))?;
        table.blocks.push((block[0].id, payload.len() as u64, packed.len() as u64));
        payload.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        payload.extend_from_slice(&packed);
    }
    let table_bytes = postcard::to_allocvec(&table).map_err(|e| Error::Config(format!("chunk table: {e}")))?;
    let table_at = payload.len() as u64;
    payload.extend_from_slice(&table_bytes);
    payload.extend_from_slice(&table_at.to_le_bytes());
    Ok(container::seal(MAGIC, &payload))
}

/// A mapped, verified chunk segment.
pub struct ChunkSegment {
    map: Mmap,
    path: std::path::PathBuf,
    table: Vec<(u64, u64, u64)>,
    payload_start: usize,
}

impl ChunkSegment {
    /// Drops the segment's pages from this process's resident set (see
    /// [`crate::fsutil::release_mapped`]).
    pub fn release_pages(&self) {
        crate::fsutil::release_mapped(&self.map);
    }

    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: segment files are immutable once committed.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        // Blocks are checked as they are read (zstd and postcard fail on damage); the whole
        // file's checksum is left to `ponder check` and the writer.
        let payload = container::open_unverified(MAGIC, &map, path)?;
        if payload.len() < 8 {
            return Err(Error::corrupt(path, "no block table"));
        }
        let table_at = u64::from_le_bytes(payload[payload.len() - 8..].try_into().unwrap()) as usize;
        if table_at > payload.len() - 8 {
            return Err(Error::corrupt(path, "block table offset out of range"));
        }
        let table: Table = postcard::from_bytes(&payload[table_at..payload.len() - 8])
            .map_err(|e| Error::corrupt(path, format!("block table: {e}")))?;
        Ok(ChunkSegment { table: table.blocks, payload_start: 12, path: path.to_path_buf(), map })
    }

    fn block(&self, i: usize) -> Result<Vec<ChunkRecord>> {
        let (_, off, len) = self.table[i];
        let start = self.payload_start + off as usize;
        let bytes = self
            .map
            .get(start..start + 4 + len as usize)
            .ok_or_else(|| Error::corrupt(&self.path, "block out of range"))?;
        let raw_len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        let raw = zstd::bulk::decompress(&bytes[4..], raw_len).map_err(|e| Error::corrupt(&self.path, format!("zstd: {e}")))?;
        postcard::from_bytes(&raw).map_err(|e| Error::corrupt(&self.path, format!("chunk block: {e}")))
    }

    /// Decodes every block: `ponder check`'s structural pass.
    pub fn verify(&self) -> Result<usize> {
        let mut n = 0;
        for i in 0..self.table.len() {
            n += self.block(i)?.len();
        }
        Ok(n)
    }

    pub fn get(&self, id: u64) -> Result<Option<ChunkRecord>> {
        let i = self.table.partition_point(|b| b.0 <= id);
        if i == 0 {
            return Ok(None);
        }
        Ok(self.block(i - 1)?.into_iter().find(|r| r.id == id))
    }

    /// The records with ids in `[first, end)`, in id order; each block is decoded once.
    pub fn range(&self, first: u64, end: u64) -> Result<Vec<ChunkRecord>> {
        let mut out = Vec::new();
        let start = self.table.partition_point(|b| b.0 <= first).saturating_sub(1);
        for i in start..self.table.len() {
            if self.table[i].0 >= end {
                break;
            }
            out.extend(self.block(i)?.into_iter().filter(|r| (first..end).contains(&r.id)));
        }
        Ok(out)
    }

    /// Every record, in id order (for compaction and rebuilds).
    pub fn all(&self) -> Result<Vec<ChunkRecord>> {
        self.range(0, u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookup() {
        let recs: Vec<ChunkRecord> = (0..200)
            .map(|i| ChunkRecord {
                id: 1000 + i * 2,
                start_byte: i,
                end_byte: i + 5,
                start_line: 1,
                end_line: 2,
                heading: (i % 3 == 0).then(|| format!("h{i}")),
                text: format!("chunk number {i} ").repeat(20),
                pages: (i % 2 == 0).then_some((i as u32 + 1, i as u32 + 2)),
            })
            .collect();
        let bytes = encode(&recs).unwrap();
        let dir = std::env::temp_dir().join(format!("ponder-chunks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("seg");
        std::fs::write(&p, &bytes).unwrap();
        let seg = ChunkSegment::open(&p).unwrap();
        assert_eq!(seg.get(1000 + 2 * 150).unwrap().unwrap(), recs[150]);
        assert_eq!(seg.get(1001).unwrap(), None);
        assert_eq!(seg.get(5).unwrap(), None);
        assert_eq!(seg.all().unwrap(), recs);
        assert!(bytes.len() < recs.iter().map(|r| r.text.len()).sum::<usize>() / 4, "zstd pays");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
