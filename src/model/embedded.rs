//! The default model (all-MiniLM-L6-v2, int8), compiled into the binary so that a fresh
//! install works offline from any directory. See `models/PROVENANCE.md`.

#[repr(C, align(64))]
struct Aligned<B: ?Sized> {
    bytes: B,
}

static DEFAULT: &Aligned<[u8]> = &Aligned { bytes: *include_bytes!("../../models/all-MiniLM-L6-v2.int8.ponder") };

/// Bytes of the embedded default model file (64-byte aligned).
pub static DEFAULT_MODEL: &[u8] = &DEFAULT.bytes;

static RERANKER: &Aligned<[u8]> =
    &Aligned { bytes: *include_bytes!("../../models/ponder-rerank-minilm-l6.int8.ponder") };

/// Bytes of the embedded default reranker (a cross-encoder trained by `ponder train
/// reranker`; see `models/RERANKER.md`), 64-byte aligned. The file leaves out its
/// word-embedding table, which is the default model's: read it with
/// `format::read_embedded_sharing` (as `Reranker::default_weights` does).
pub static DEFAULT_RERANKER: &[u8] = &RERANKER.bytes;

/// Gives back the resident pages of both built-in models (see
/// [`crate::fsutil::release_static`]). Called once a runtime has copied what it needs out of
/// them: their layers are packed into the kernels' own layout at load, so only the rows of
/// the word-embedding table that queries look up are read again, and those come back one
/// page at a time. Saves about 35 MB of a server's resident memory.
pub fn release_pages() {
    crate::fsutil::release_static(DEFAULT_MODEL);
    crate::fsutil::release_static(DEFAULT_RERANKER);
}
