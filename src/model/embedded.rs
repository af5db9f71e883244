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
